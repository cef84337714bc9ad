"""Approval routing: a table of rules -> one ordered chain of levels, without duplicate roles.

Each rule names a condition, the role that must approve when it holds, and a position.
The chain lists each matching role once, ordered by the lowest position among its matching
rules (ties by role name), carrying every reason that sent the order there. A role's level
times out to `reject` unless one of its matching rules says `approve`. A rule with a scope
(domain/scopes.py) holds only for the customers it names: tier, channel, age, payment record.

`compare` replays two tables on the same facts with the same `route`, for the dry run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import Field, TypeAdapter

from domain.approvals import ApprovalLevel, RoutingRule
from domain.base import Model
from domain.facts import CustomerRecord
from domain.money import fmt
from domain.scopes import applies, describe

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
    # The customer's tier, channel, age and payment record; None: scoped rules do not hold.
    customer: CustomerRecord | None = None


_FACTS = TypeAdapter(RoutingFacts)


def facts_to_json(facts: RoutingFacts) -> dict[str, Any]:
    """The facts as stored on the order (JSON), for the dry run to replay."""
    out: dict[str, Any] = _FACTS.dump_python(facts, mode="json")
    return out


def facts_from_json(data: dict[str, Any]) -> RoutingFacts:
    """Facts stored by `facts_to_json`."""
    return _FACTS.validate_python(data)


def _holds(rule: RoutingRule, facts: RoutingFacts) -> list[str]:
    if not applies(rule.scope, facts.customer):
        return []
    why = _condition(rule, facts)
    if rule.scope is not None and why:
        return [f"{w} ({describe(rule.scope)})" for w in why]
    return why


def _condition(rule: RoutingRule, facts: RoutingFacts) -> list[str]:
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


FIRST_PASS = "first-pass"


def route_label(levels: Sequence[ApprovalLevel]) -> str:
    """A chain in words: `first-pass` or its roles in order (`sales_manager > director`)."""
    return " > ".join(lv.role for lv in levels) or FIRST_PASS


class RouteMove(Model):
    from_route: str
    to_route: str
    orders: int
    order_ids: list[str] = Field(description="the first ten, oldest first")


class RoleLoad(Model):
    role: str
    levels_before: int
    levels_after: int
    delta: int
    hours_per_level: Decimal
    hours_delta: Decimal


class DryRun(Model):
    """What a proposed table would have done to the orders replayed, against the table now."""

    days: int
    orders: int
    skipped: int = Field(description="orders in the window without stored routing facts")
    changed: int
    first_pass_before: int
    first_pass_after: int
    moves: list[RouteMove]
    roles: list[RoleLoad]
    levels_delta: int
    hours_delta: Decimal


def compare(
    facts: Iterable[tuple[str, RoutingFacts]],
    current: Sequence[RoutingRule],
    proposed: Sequence[RoutingRule],
    hours_per_level: Mapping[str, Decimal],
    *,
    days: int,
    skipped: int = 0,
) -> DryRun:
    """Route every order's facts with both tables (the same `route` as live routing)."""
    moves: dict[tuple[str, str], list[str]] = {}
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    orders = first_before = first_after = 0
    for order_id, f in facts:
        old, new = route(f, tuple(current)), route(f, tuple(proposed))
        orders += 1
        first_before += not old
        first_after += not new
        before.update(lv.role for lv in old)
        after.update(lv.role for lv in new)
        key = (route_label(old), route_label(new))
        if key[0] != key[1]:
            moves.setdefault(key, []).append(order_id)
    roles = [
        _load(role, before[role], after[role], hours_per_level.get(role, Decimal("0")))
        for role in sorted(before.keys() | after.keys())
    ]
    return DryRun(
        days=days,
        orders=orders,
        skipped=skipped,
        changed=sum(len(ids) for ids in moves.values()),
        first_pass_before=first_before,
        first_pass_after=first_after,
        moves=[
            RouteMove(from_route=a, to_route=b, orders=len(ids), order_ids=ids[:10])
            for (a, b), ids in sorted(moves.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
        roles=[r for r in roles if r.delta],
        levels_delta=sum(r.delta for r in roles),
        hours_delta=sum((r.hours_delta for r in roles), Decimal("0.0")),
    )


def _load(role: str, n_before: int, n_after: int, hours: Decimal) -> RoleLoad:
    delta = n_after - n_before
    return RoleLoad(
        role=role,
        levels_before=n_before,
        levels_after=n_after,
        delta=delta,
        hours_per_level=hours.quantize(Decimal("0.1")),
        hours_delta=(hours * delta).quantize(Decimal("0.1")) + 0,  # never "-0.0"
    )
