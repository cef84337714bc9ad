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
