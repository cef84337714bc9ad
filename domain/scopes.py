"""Rule scopes: which customers an approval rule applies to.

A scope narrows a routing rule to orders of some customers: by tier, by channel, by age
(new: within the first N orders or younger than N days since the first order) and by
payment record (any invoice paid late, or still unpaid past its due date, in the last N
months). Every criterion given must hold; a rule without a scope applies to everyone.
Pure: the facts are loaded by the caller (`CustomerRecord`) and passed in.
"""

from __future__ import annotations

import calendar
from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from domain.base import Model
from domain.facts import CustomerRecord
from domain.types import Code40

# Counting a customer's earlier orders stops here: "first N orders" never needs more.
MAX_FIRST_ORDERS = 1000


class CustomerAge(Model):
    """`new`: within the first `first_orders` orders, or fewer than `younger_than_days` days
    since the first order (either, when both are given); `established`: neither."""

    status: Literal["new", "established"]
    first_orders: int | None = Field(default=None, ge=1, le=MAX_FIRST_ORDERS)
    younger_than_days: int | None = Field(default=None, ge=1, le=36_500)

    @model_validator(mode="after")
    def _a_measure_is_given(self) -> CustomerAge:
        if self.first_orders is None and self.younger_than_days is None:
            raise ValueError("give first_orders, younger_than_days or both")
        return self


class PaymentRecord(Model):
    """`late`: an invoice paid after its due date (or still open past it) within the last
    `months` months; `good`: none."""

    status: Literal["late", "good"]
    months: int = Field(ge=1, le=120)


class RuleScope(Model):
    """Which customers a rule applies to; empty lists mean any tier or channel."""

    tiers: list[Literal["standard", "silver", "gold"]] = Field(default_factory=list, max_length=3)
    channels: list[Code40] = Field(default_factory=list, max_length=50)
    customer_age: CustomerAge | None = None
    payment_record: PaymentRecord | None = None


def months_before(day: date, months: int) -> date:
    """The same day `months` calendar months earlier (clamped to the month's end)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def is_new(age: CustomerAge, record: CustomerRecord) -> bool:
    """Whether the customer counts as new under this measure of age."""
    by_orders = age.first_orders is not None and record.prior_orders < age.first_orders
    days = (record.as_of - record.first_order_on).days if record.first_order_on else 0
    by_days = age.younger_than_days is not None and days < age.younger_than_days
    return by_orders or by_days


def paid_late(payment: PaymentRecord, record: CustomerRecord) -> bool:
    """Whether any payment was late within the scope's window."""
    last = record.last_late_payment_on
    return last is not None and last >= months_before(record.as_of, payment.months)


def applies(scope: RuleScope | None, record: CustomerRecord | None) -> bool:
    """Whether a rule with this scope applies to this customer's order.

    A scoped rule never applies without the customer's facts (nothing to judge it by)."""
    if scope is None:
        return True
    if record is None:
        return False
    if scope.tiers and record.tier not in scope.tiers:
        return False
    if scope.channels and record.channel not in scope.channels:
        return False
    age = scope.customer_age
    if age is not None and is_new(age, record) != (age.status == "new"):
        return False
    pay = scope.payment_record
    return pay is None or paid_late(pay, record) == (pay.status == "late")


def describe(scope: RuleScope) -> str:
    """The scope in words, for the approval reason ("new customer", "gold", ...)."""
    parts: list[str] = []
    if scope.tiers:
        parts.append("/".join(scope.tiers))
    if scope.channels:
        parts.append("channel " + "/".join(scope.channels))
    if scope.customer_age is not None:
        parts.append(f"{scope.customer_age.status} customer")
    pay = scope.payment_record
    if pay is not None:
        word = "late payer" if pay.status == "late" else "good payer"
        parts.append(f"{word} ({pay.months} months)")
    return ", ".join(parts)
