"""Order priority (normal | urgent): who set it, and the rules that make an order urgent.

An order's priority comes from one of three sources: its caller (`"priority"` on POST
/orders), ops by hand (PUT /orders/{id}/priority), or the priority rules. A caller's or
ops' value is kept; a rule-set priority is worked out again whenever the rules change,
as long as the order has not reached the floor (status before `picking`).

A rule names one condition; an order is urgent when any rule holds, normal otherwise
(an empty table: every order is normal):

- `customer_tier` with `value` (standard | silver | gold): the customer has that tier;
- `requested_within_days` with `days`: the requested delivery date is at most that many
  days after the day the rule is applied (intake, or the rule change);
- `product_class` with `value`: some line's product has that class (products.product_class).

Pure and deterministic: the same function runs at intake and when the rules change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from domain.base import Model
from domain.status import OrderStatus
from domain.types import Code40

Priority = Literal["normal", "urgent"]
PrioritySource = Literal["rule", "caller", "ops"]
PriorityCondition = Literal["customer_tier", "requested_within_days", "product_class"]
TIERS = ("standard", "silver", "gold")

# Orders whose rule-set priority follows a rule change: not yet on the warehouse floor.
BEFORE_PICKING = frozenset(
    {
        OrderStatus.RECEIVED,
        OrderStatus.VALIDATED,
        OrderStatus.AWAITING_APPROVAL,
        OrderStatus.APPROVED,
        OrderStatus.RESERVED,
        OrderStatus.BACKORDERED,
    }
)


class PriorityRule(Model):
    """One condition that makes an order urgent."""

    condition: PriorityCondition
    value: Code40 | None = None
    days: int | None = Field(default=None, ge=0, le=365)

    @model_validator(mode="after")
    def _fields_fit_the_condition(self) -> PriorityRule:
        if self.condition == "requested_within_days":
            if self.days is None:
                raise ValueError("requested_within_days needs `days` (0..365)")
            if self.value is not None:
                raise ValueError("requested_within_days takes `days`, not `value`")
            return self
        if self.value is None:
            raise ValueError(f"{self.condition} needs `value`")
        if self.days is not None:
            raise ValueError(f"{self.condition} takes `value`, not `days`")
        if self.condition == "customer_tier" and self.value not in TIERS:
            raise ValueError(f"customer_tier `value` must be one of {', '.join(TIERS)}")
        return self


@dataclass(frozen=True)
class PriorityFacts:
    customer_tier: str
    requested_delivery_date: date | None
    # The day the rules are applied (intake, or the day they changed).
    today: date
    product_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PriorityDecision:
    priority: Priority
    source: PrioritySource
    reasons: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        why = "; ".join(self.reasons) if self.reasons else "no rule applies"
        return f"priority {self.priority} ({self.source}: {why})"


def _reason(rule: PriorityRule, facts: PriorityFacts) -> str | None:
    if rule.condition == "customer_tier":
        return f"customer tier {rule.value}" if facts.customer_tier == rule.value else None
    if rule.condition == "requested_within_days":
        when = facts.requested_delivery_date
        assert rule.days is not None
        if when is not None and (when - facts.today).days <= rule.days:
            return f"requested for {when.isoformat()}, within {rule.days} days"
        return None
    return f"product class {rule.value}" if rule.value in facts.product_classes else None


def by_rules(rules: Iterable[PriorityRule], facts: PriorityFacts) -> PriorityDecision:
    """Urgent when any rule holds (every reason listed, in rule order), else normal."""
    reasons = tuple(r for r in (_reason(rule, facts) for rule in rules) if r is not None)
    return PriorityDecision("urgent" if reasons else "normal", "rule", reasons)


def decide(
    explicit: Priority | None, rules: Iterable[PriorityRule], facts: PriorityFacts
) -> PriorityDecision:
    """The caller's explicit value wins over the rules."""
    if explicit is not None:
        return PriorityDecision(explicit, "caller", ("set by the caller",))
    return by_rules(rules, facts)


def follows_rules(source: str, status: str) -> bool:
    """Whether a rule change re-decides this order's priority."""
    return source == "rule" and status in BEFORE_PICKING
