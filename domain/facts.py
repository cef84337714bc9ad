"""Read-only facts the rules need, loaded from PostgreSQL by the caller and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class CustomerFacts:
    code: str
    tier: str
    status: str
    credit_limit: Decimal
    address_complete: bool
    # Customer-specific prices override every other price rule (sku -> unit price).
    special_prices: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductFacts:
    sku: str
    active: bool
    unit_price: Decimal
    floor_price: Decimal
    pack_size: int
    min_order_qty: int
    make_to_order: bool = False


@dataclass(frozen=True)
class CreditFacts:
    open_receivables: Decimal
    unbilled_open_orders: Decimal
    max_days_overdue: int


@dataclass(frozen=True)
class StockFacts:
    available: int
    next_receipt: date | None = None


@dataclass(frozen=True)
class CustomerRecord:
    """What a rule scope reads about the customer of one order, as of its assessment."""

    tier: str
    channel: str
    # Orders of this customer created before this one (counted up to a cap).
    prior_orders: int = 0
    first_order_on: date | None = None
    # The latest day a payment was late: paid after its due date, or open past it (as_of).
    last_late_payment_on: date | None = None
    as_of: date = date(2000, 1, 1)
