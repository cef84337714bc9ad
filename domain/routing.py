"""Approval routing: a table of rules -> one ordered chain of levels, without duplicate roles.

Each rule names a condition, the role that must approve when it holds, and a position.
The chain lists each matching role once, ordered by the lowest position among its matching
rules (ties by role name), carrying every reason that sent the order there. A role's level
times out to `reject` unless one of its matching rules says `approve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from domain.approvals import ApprovalLevel, RoutingRule
from domain.money import fmt

DEFAULT_RULES: tuple[RoutingRule, ...] = (
    RoutingRule(condition="credit_over_limit", role="credit_controller", position=10),
    RoutingRule(condition="receivable_overdue", role="credit_controller", position=10),
    RoutingRule(condition="price_below_floor", role="sales_manager", position=20),
    RoutingRule(condition="discount_beyond_max", role="sales_manager", position=20),
    RoutingRule(
        condition="total_above", role="sales_manager", position=20, threshold=Decimal("100000.00")
    ),
    RoutingRule(
        condition="total_above", role="director", position=30, threshold=Decimal("500000.00")
    ),
    RoutingRule(condition="special_instructions", role="ops", position=40),
)


@dataclass(frozen=True)
class RoutingFacts:
    total: Decimal
    # condition -> reasons it holds (empty or missing: it does not hold)
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _holds(rule: RoutingRule, facts: RoutingFacts) -> list[str]:
    if rule.condition == "total_above":
        assert rule.threshold is not None
        if facts.total > rule.threshold:
            return [f"total {fmt(facts.total)} above {fmt(rule.threshold)}"]
        return []
    return list(facts.reasons.get(rule.condition, ()))


def route(
    facts: RoutingFacts, rules: tuple[RoutingRule, ...] | list[RoutingRule]
) -> list[ApprovalLevel]:
    """The approval chain for an order; empty means first-pass (touchless)."""
    matched: dict[str, tuple[int, list[str], bool]] = {}
    for rule in rules:
        why = _holds(rule, facts)
        if not why:
            continue
        pos, reasons, approve = matched.get(rule.role, (rule.position, [], False))
        reasons += [r for r in why if r not in reasons]
        matched[rule.role] = (
            min(pos, rule.position),
            reasons,
            approve or rule.on_timeout == "approve",
        )
    chain = sorted(matched.items(), key=lambda kv: (kv[1][0], kv[0]))
    return [
        ApprovalLevel(
            level=i + 1,
            role=role,
            reason="; ".join(reasons),
            on_timeout="approve" if approve else "reject",
        )
        for i, (role, (_, reasons, approve)) in enumerate(chain)
    ]
