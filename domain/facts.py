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
