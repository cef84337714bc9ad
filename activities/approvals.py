"""Approval levels in PostgreSQL: opened when the workflow starts waiting, closed on decision."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import Approval
from domain.approvals import DecisionRecord
from domain.orders import StatusChange
from domain.status import OrderStatus


class ApprovalActivities(DbActivities):
    @activity.defn(name="approvals.open_level")
    async def open_level(self, rec: DecisionRecord) -> None:
        """Put the level in the role's inbox and the order in awaiting_approval."""
        async with self.tx() as s:
            await s.execute(
                insert(Approval)
                .values(
                    order_id=rec.order_id,
                    level=rec.level,
                    role=rec.role,
                    reason=rec.reason,
                    status="pending",
                )
                .on_conflict_do_update(
                    constraint="uq_approvals_order_level",
                    set_={"role": rec.role},
                    where=Approval.status == "pending",
                )
            )
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=rec.order_id,
                    status=OrderStatus.AWAITING_APPROVAL,
                    step_key=f"awaiting:{rec.level}:{rec.role}",
                    detail=f"level {rec.level} waits for {rec.role}: {rec.reason}",
                    awaiting_role=rec.role,
                ),
            )

    @activity.defn(name="approvals.record_decision")
    async def record_decision(self, rec: DecisionRecord) -> None:
        """Close a level with who decided what; writing it twice changes nothing."""
        async with self.tx() as s:
            await s.execute(
                update(Approval)
                .where(
                    Approval.order_id == rec.order_id,
                    Approval.level == rec.level,
                    Approval.status == "pending",
                )
                .values(
                    status=rec.status,
                    decided_by=rec.decided_by,
                    comment=rec.comment,
                    decided_at=func.now(),
                )
            )
            await repo.record_event(
                s,
                rec.order_id,
                f"decision:{rec.level}",
                status=None,
                kind="approval",
                actor=rec.decided_by or "system",
                detail=f"level {rec.level} ({rec.role}) {rec.status}"
                + (f": {rec.comment}" if rec.comment else ""),
            )
