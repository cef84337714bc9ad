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


# Which status an order may move to from each status: the one table the workflow (which
# follows the status) and the database (which writes it) both check. Staying put is no move
# (another approval level, another look at a backorder); any open status can end rejected,
# cancelled or failed. After a partial shipment the remainder can be cancelled in whatever
# fulfilment status it was, and the shipped part is still delivered.
_ENDS = frozenset({OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FAILED})
_FULFILLING = frozenset(
    {
        OrderStatus.RESERVED,
        OrderStatus.BACKORDERED,
        OrderStatus.PICKING,
        OrderStatus.PACKED,
        OrderStatus.SHIPPED,
        OrderStatus.INVOICED,
    }
)
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.RECEIVED: frozenset({OrderStatus.VALIDATED}),
    OrderStatus.VALIDATED: frozenset({OrderStatus.AWAITING_APPROVAL, OrderStatus.APPROVED}),
    OrderStatus.AWAITING_APPROVAL: frozenset({OrderStatus.APPROVED}),
    # An amendment after approval routes the order to approvers again.
    OrderStatus.APPROVED: frozenset(
        {OrderStatus.AWAITING_APPROVAL, OrderStatus.RESERVED, OrderStatus.BACKORDERED}
    ),
    # Partial shipment goes with what is reserved: picked or packed while backordered.
    OrderStatus.RESERVED: frozenset({OrderStatus.PICKING, OrderStatus.PACKED}),
    OrderStatus.BACKORDERED: frozenset(
        {OrderStatus.RESERVED, OrderStatus.PICKING, OrderStatus.PACKED}
    ),
    # Manual warehouse mode: a short pick (no partial shipment) reserves the shipment again.
    OrderStatus.PICKING: frozenset(
        {OrderStatus.PACKED, OrderStatus.RESERVED, OrderStatus.BACKORDERED}
    ),
    # Combined steps ship and invoice in one.
    OrderStatus.PACKED: frozenset({OrderStatus.SHIPPED, OrderStatus.INVOICED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.INVOICED}),
    # The next shipment of a partially shipped order starts over at reservation.
    OrderStatus.INVOICED: frozenset({OrderStatus.RESERVED, OrderStatus.BACKORDERED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.COMPLETED}),
}


def can_move(current: OrderStatus, to: OrderStatus) -> bool:
    """Whether an order in `current` may move to `to` (see TRANSITIONS)."""
    if current in FINAL_STATUSES:
        return False
    if to == current or to in _ENDS:
        return True
    if to == OrderStatus.DELIVERED:
        return current in _FULFILLING
    return to in TRANSITIONS.get(current, frozenset())
