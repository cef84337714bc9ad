"""Order statuses and which of them allow what."""

from enum import StrEnum


class OrderStatus(StrEnum):
    RECEIVED = "received"
    VALIDATED = "validated"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RESERVED = "reserved"
    BACKORDERED = "backordered"
    PICKING = "picking"
    PACKED = "packed"
    SHIPPED = "shipped"
    INVOICED = "invoiced"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


FINAL_STATUSES = frozenset(
    {OrderStatus.COMPLETED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FAILED}
)
# Once goods have left the warehouse, undoing the order is a return, not a cancellation.
SHIPPED_OR_LATER = frozenset(
    {OrderStatus.SHIPPED, OrderStatus.INVOICED, OrderStatus.DELIVERED, OrderStatus.COMPLETED}
)
# Lines can change only before stock is reserved for them.
LINES_AMENDABLE = frozenset(
    {
        OrderStatus.RECEIVED,
        OrderStatus.VALIDATED,
        OrderStatus.AWAITING_APPROVAL,
        OrderStatus.APPROVED,
    }
)
# Statuses in which the order still counts as open, unbilled exposure for credit control.
UNBILLED_OPEN = frozenset(
    {
        OrderStatus.RECEIVED,
        OrderStatus.VALIDATED,
        OrderStatus.AWAITING_APPROVAL,
        OrderStatus.APPROVED,
        OrderStatus.RESERVED,
        OrderStatus.BACKORDERED,
        OrderStatus.PICKING,
        OrderStatus.PACKED,
        OrderStatus.SHIPPED,
    }
)


def can_cancel(status: OrderStatus) -> bool:
    """A cancellation is possible until the goods ship and while the order is not over."""
    return status not in SHIPPED_OR_LATER and status not in FINAL_STATUSES


def wave_key(key: str, n: int) -> str:
    """A timeline step key for the n-th shipment (or approval round) of an order: the first
    keeps the plain key, so a step is recorded once per shipment."""
    return key if n == 1 else f"{key}:{n}"
