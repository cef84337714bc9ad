"""Order priority in PostgreSQL: the rules table, intake's decision, ops' override, and
re-applying the rules to orders not yet on the floor (rules in domain/priority.py).

Priority is data the warehouse reads; it never changes an order's workflow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import repo
from db.models import Customer, Order, OrderEvent, OrderLine, PriorityRuleRow, Product
from domain.orders import OrderIn
from domain.priority import (
    BEFORE_PICKING,
    Priority,
    PriorityDecision,
    PriorityFacts,
    PriorityRule,
    by_rules,
    decide,
)

RULES_KIND = "priority"


async def load_rules(session: AsyncSession) -> tuple[list[PriorityRule], int]:
    """The rules in their order, and the table's version (0: never edited)."""
    rows = (
        await session.scalars(
            select(PriorityRuleRow).order_by(PriorityRuleRow.position, PriorityRuleRow.id)
        )
    ).all()
    # Validated as any caller's rule: the column is a plain string, the rule's a Literal.
    rules = [PriorityRule.model_validate(r, from_attributes=True) for r in rows]
    return rules, await repo.rule_version(session, RULES_KIND)


async def product_classes(session: AsyncSession, skus: Iterable[str]) -> frozenset[str]:
    rows = await session.scalars(
        select(Product.product_class).where(
            Product.sku.in_(set(skus)), Product.product_class.is_not(None)
        )
    )
    return frozenset(c for c in rows if c)


async def for_new_order(
    session: AsyncSession, body: OrderIn, customer_tier: str, today: date
) -> PriorityDecision:
    """The caller's value, or what the rules say about this order."""
    if body.priority is not None:
        return decide(body.priority, [], PriorityFacts(customer_tier, None, today))
    rules, _ = await load_rules(session)
    if not rules:
        return by_rules([], PriorityFacts(customer_tier, None, today))
    facts = PriorityFacts(
        customer_tier=customer_tier,
        requested_delivery_date=body.requested_delivery_date,
        today=today,
        product_classes=await product_classes(session, (line.sku for line in body.lines)),
    )
    return by_rules(rules, facts)


@dataclass(frozen=True)
class Reapplied:
    version: int
    checked: int
    changed: list[str]


async def replace_rules(
    session: AsyncSession, rules: list[PriorityRule], actor: str, today: date
) -> Reapplied:
    """Replace the table (one version per edit) and re-decide every rule-set order that has
    not reached picking; each change goes in the order's timeline. Commits."""
    await session.execute(delete(PriorityRuleRow))
    session.add_all(
        [
            PriorityRuleRow(position=i, condition=r.condition, value=r.value, days=r.days)
            for i, r in enumerate(rules)
        ]
    )
    version = await repo.bump_version(session, RULES_KIND, actor)
    open_states = [s.value for s in BEFORE_PICKING]
    orders = (
        await session.execute(
            select(Order.id, Order.priority, Order.requested_delivery_date, Customer.tier)
            .join(Customer, Customer.code == Order.customer_code)
            .where(Order.priority_source == "rule", Order.status.in_(open_states))
            .order_by(Order.id)
            # FOR UPDATE OF orders: an order moving to picking meanwhile waits for this edit
            # (or this edit for it), so no order on the floor has its priority changed.
            .with_for_update(of=Order)
        )
    ).all()
    classes: dict[str, set[str]] = {}
    if orders:
        ids = [o.id for o in orders]
        for order_id, cls in await session.execute(
            select(OrderLine.order_id, Product.product_class)
            .join(Product, Product.sku == OrderLine.sku)
            .where(OrderLine.order_id.in_(ids), Product.product_class.is_not(None))
        ):
            if cls:
                classes.setdefault(order_id, set()).add(cls)
    changed: list[str] = []
    for o in orders:
        facts = PriorityFacts(
            o.tier, o.requested_delivery_date, today, frozenset(classes.get(o.id, ()))
        )
        d = by_rules(rules, facts)
        if d.priority == o.priority:
            continue
        await session.execute(
            update(Order)
            .where(Order.id == o.id, Order.priority_source == "rule")
            .values(priority=d.priority)
        )
        await repo.record_event(
            session,
            o.id,
            f"priority:rules-v{version}",
            status=None,
            kind="priority",
            actor=actor,
            detail=f"{d.detail}, priority rules v{version}",
        )
        changed.append(o.id)
    await session.commit()
    return Reapplied(version=version, checked=len(orders), changed=changed)


async def set_by_ops(
    session: AsyncSession, order_id: str, priority: Priority, reason: str, actor: str
) -> dict[str, str] | None:
    """Ops set an order's priority by hand: kept from now on, whatever the rules say.
    None for an unknown order. Commits."""
    order = await session.get(Order, order_id, with_for_update=True)
    if order is None:
        return None
    before = f"{order.priority} ({order.priority_source})"
    order.priority, order.priority_source = priority, "ops"
    seq = (
        await session.scalar(
            select(func.count()).where(
                OrderEvent.order_id == order_id, OrderEvent.kind == "priority"
            )
        )
        or 0
    )
    await repo.record_event(
        session,
        order_id,
        f"priority:ops-{seq + 1}",
        status=None,
        kind="priority",
        actor=actor,
        detail=f"priority {priority} set by {actor} (was {before}): {reason}",
    )
    await session.commit()
    return {"id": order_id, "priority": priority, "priority_source": "ops"}
