"""Approval routing: conditions -> one ordered chain of levels, without duplicate roles.

The chain always follows ROLE_ORDER (credit first, then commercial, then ops), whatever
the order in which conditions were found; a role appears once, carrying every reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orderflow.domain.money import fmt
from orderflow.domain.payloads import ApprovalLevel

ROLE_ORDER = ("credit_controller", "sales_manager", "director", "ops")


@dataclass(frozen=True)
class RoutingFacts:
    total: Decimal
    credit_reasons: tuple[str, ...] = ()
    price_reasons: tuple[str, ...] = ()
    special_instructions: bool = False


@dataclass(frozen=True)
class RoutingPolicy:
    version: str = "builtin"
    manager_threshold: Decimal = Decimal("100000.00")
    director_threshold: Decimal = Decimal("500000.00")


def route(facts: RoutingFacts, policy: RoutingPolicy) -> list[ApprovalLevel]:
    """The approval chain for an order; empty means first-pass (touchless)."""
    reasons: dict[str, list[str]] = {role: [] for role in ROLE_ORDER}
    reasons["credit_controller"] += facts.credit_reasons
    reasons["sales_manager"] += facts.price_reasons
    if facts.total > policy.manager_threshold:
        reasons["sales_manager"].append(
            f"total {fmt(facts.total)} above {fmt(policy.manager_threshold)}"
        )
    if facts.total > policy.director_threshold:
        reasons["director"].append(
            f"total {fmt(facts.total)} above {fmt(policy.director_threshold)}"
        )
    if facts.special_instructions:
        reasons["ops"].append("special instructions present")
    chain = [(role, why) for role, why in reasons.items() if why]
    return [
        ApprovalLevel(level=i + 1, role=role, reason="; ".join(why))
        for i, (role, why) in enumerate(chain)
    ]
