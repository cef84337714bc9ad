"""Operations: find the orders that have not moved, and say why, from PostgreSQL and Temporal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from db.models import Alert, Approval, Order, OrderLine
from db.session import SessionFactory
from domain.status import FINAL_STATUSES, OrderStatus
from services.config import Settings
from services.temporal import temporal_ui_link, workflow_id


@dataclass
class StuckOrder:
    order_id: str
    status: str
    since: datetime
    why: str
    link: str

    @property
    def waiting(self) -> timedelta:
        return datetime.now(UTC) - self.since


async def _why_in_db(sessions: SessionFactory, order: Order) -> str:
    async with sessions() as s:
        if order.status == OrderStatus.AWAITING_APPROVAL.value:
            level = await s.scalar(
                select(Approval)
                .where(Approval.order_id == order.id, Approval.status == "pending")
                .order_by(Approval.level)
            )
            if level is not None:
                return f"waits for {level.role} (level {level.level}): {level.reason}"
        if order.status == OrderStatus.BACKORDERED.value:
            short = (
                await s.execute(
                    select(OrderLine.sku, OrderLine.quantity - OrderLine.reserved_qty)
                    .where(
                        OrderLine.order_id == order.id, OrderLine.reserved_qty < OrderLine.quantity
                    )
                    .order_by(OrderLine.sku)
                )
            ).all()
            return "short of stock: " + ", ".join(f"{sku} x{qty}" for sku, qty in short)
        held = await s.scalar(
            select(Alert.summary)
            .where(
                Alert.order_id == order.id, Alert.status == "open", Alert.kind == "carrier_failed"
            )
            .order_by(Alert.created_at.desc())
            .limit(1)
        )
        if held:
            return f"carrier booking on hold: {held}"
        if order.status in (OrderStatus.SHIPPED.value, OrderStatus.INVOICED.value):
            return "waits for the carrier to confirm delivery"
    return f"in {order.status}"


# The worker's recovery (recovery.py) starts a stored order without a workflow within
# seconds of Temporal answering; only one it has not started for this long needs a person.
SELF_START_WINDOW = timedelta(minutes=2)
SELF_STARTING = "starting by itself"
WHY_AT_ONCE = 8
OPEN_STATUSES = [st.value for st in OrderStatus if st not in FINAL_STATUSES]


async def _why_in_temporal(client: Client, order: Order) -> str | None:
    """What Temporal knows: a missing workflow, a failing activity, an ended run."""
    handle = client.get_workflow_handle(workflow_id(order.id))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            age = datetime.now(UTC) - order.created_at
            if order.status == OrderStatus.RECEIVED.value and age < SELF_START_WINDOW:
                return SELF_STARTING
            return (
                f"no workflow: stored {str(age).split('.')[0]} ago and never started; a "
                "worker starts such orders once Temporal answers: check that one runs"
            )
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        name = desc.status.name if desc.status else "unknown"
        return f"workflow is {name.lower()} but the order is not finished"
    for pending in desc.raw_description.pending_activities:
        if pending.attempt > 1:
            failure = pending.last_failure.message or "no message"
            return f"{pending.activity_type.name} is failing (attempt {pending.attempt}): {failure}"
    return None


async def find_stuck(
    sessions: SessionFactory,
    client: Client,
    settings: Settings,
    older_than: timedelta,
    status: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[StuckOrder]:
    """Open orders whose status has not changed for `older_than`, oldest first."""
    cutoff = datetime.now(UTC) - older_than
    async with sessions() as s:
        q = (
            select(Order)
            # The open statuses by name (not "not final"): each is a range of the
            # (status, updated_at) index, where NOT IN read every order ever made.
            .where(Order.status.in_(OPEN_STATUSES), Order.updated_at <= cutoff)
            .order_by(Order.updated_at, Order.id)
            .offset(offset)
            .limit(limit)
        )
        if status is not None:
            q = q.where(Order.status == status)
        orders = list((await s.scalars(q)).all())
    # Asked about a few orders at a time: one after the other, 200 orders were 200 round
    # trips to Temporal and as many to PostgreSQL, in turn.
    gate = asyncio.Semaphore(WHY_AT_ONCE)

    async def why(order: Order) -> str:
        async with gate:
            return await _why_in_temporal(client, order) or await _why_in_db(sessions, order)

    reasons = await asyncio.gather(*(why(order) for order in orders))
    return [
        StuckOrder(
            order.id, order.status, order.updated_at, reason, temporal_ui_link(settings, order.id)
        )
        for order, reason in zip(orders, reasons, strict=True)
        if reason != SELF_STARTING  # nothing for a person to do
    ]
