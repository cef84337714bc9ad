"""Plain status transitions of an order that touch only PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import Order
from domain.orders import StatusChange
from domain.status import FINAL_STATUSES, OrderStatus


class OrderActivities(DbActivities):
    @activity.defn(name="orders.set_status")
    async def set_status(self, change: StatusChange) -> None:
        """Record a status; final statuses that are not `completed` keep their reason too."""
        async with self.tx() as s:
            fresh = await repo.apply_status(s, change)
            if fresh and change.status in FINAL_STATUSES and change.status != OrderStatus.COMPLETED:
                await s.execute(
                    update(Order)
                    .where(Order.id == change.order_id)
                    .values(failure_reason=change.detail)
                )

    @activity.defn(name="orders.note")
    async def note(self, change: StatusChange) -> None:
        """A timeline entry that does not change the status (e.g. an ignored signal)."""
        async with self.tx() as s:
            await repo.record_event(
                s,
                change.order_id,
                change.step_key,
                status=None,
                kind="note",
                detail=change.detail,
                actor=change.actor,
            )
