"""GET /approvals: the caller's inbox, urgent orders first, then oldest, with why and how long."""

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlalchemy import Select, case, select

from api.deps import CurrentUser, SessionDep
from db.models import Approval, Order
from domain.base import Model, Money

router = APIRouter(prefix="/approvals", tags=["approvals"])


class InboxItem(Model):
    order_id: str
    level: int
    role: str
    reason: str
    customer_code: str
    priority: str
    total: Money
    requested_at: datetime
    waiting_seconds: int


def pending_for(role: str) -> Select[Approval, Order]:
    """The levels waiting for `role` (admin: every role), urgent orders first, then oldest;
    the API and /ui."""
    q = (
        select(Approval, Order)
        .join(Order, Order.id == Approval.order_id)
        .where(Approval.status == "pending")
        .order_by(
            case((Order.priority == "urgent", 0), else_=1), Approval.requested_at, Approval.id
        )
    )
    return q if role == "admin" else q.where(Approval.role == role)


@router.get("")
async def inbox(session: SessionDep, user: CurrentUser) -> list[InboxItem]:
    q = pending_for(user.role).limit(500)
    now = datetime.now(UTC)
    return [
        InboxItem(
            order_id=o.id,
            level=a.level,
            role=a.role,
            reason=a.reason,
            customer_code=o.customer_code,
            priority=o.priority,
            total=o.total,
            requested_at=a.requested_at,
            waiting_seconds=int((now - a.requested_at).total_seconds()),
        )
        for a, o in (await session.execute(q)).all()
    ]
