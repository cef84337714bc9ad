"""Queries shared by the API and the activities, so both read the same facts the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Customer,
    CustomerPrice,
    Order,
    OrderEvent,
    Product,
    Replenishment,
    RoutingRuleRow,
    RuleVersion,
    Stock,
    TierPrice,
)
from db.models import Promotion as PromotionRow
from db.models import QuantityBreak as QuantityBreakRow
from db.notices import RECEIVERS_SQL
from domain.approvals import RoutingRule
from domain.facts import CreditFacts, CustomerFacts, ProductFacts, StockFacts
from domain.notices import notice_for
from domain.orders import StatusChange
from domain.pricing import PriceRules, Promotion, QuantityBreak
from domain.status import UNBILLED_OPEN, OrderStatus, can_move


def customer_facts(
    row: Customer | None, special_prices: dict[str, Decimal] | None = None
) -> CustomerFacts | None:
    if row is None:
        return None
    complete = all([row.address_line1, row.city, row.postal_code, row.country])
    return CustomerFacts(
        code=row.code,
        tier=row.tier,
        status=row.status,
        credit_limit=row.credit_limit,
        address_complete=complete,
        special_prices=special_prices or {},
    )


async def rule_version(session: AsyncSession, kind: str) -> int:
    return int(
        await session.scalar(select(RuleVersion.version).where(RuleVersion.kind == kind)) or 0
    )


async def bump_version(session: AsyncSession, kind: str, actor: str) -> int:
    """Record that pricing or routing changed; orders record the version they used."""
    result = await session.execute(
        insert(RuleVersion)
        .values(kind=kind, version=1, changed_by=actor)
        .on_conflict_do_update(
            index_elements=[RuleVersion.kind],
            set_={
                "version": RuleVersion.version + 1,
                "changed_by": actor,
                "changed_at": func.now(),
            },
        )
        .returning(RuleVersion.version)
    )
    return int(result.scalar_one())


@dataclass(frozen=True)
class RuleSnapshot:
    """Pricing and routing data as of one pair of versions; cheap to share between requests."""

    versions: dict[str, int]
    tier_prices: dict[tuple[str, str], Decimal]
    breaks: dict[str, tuple[QuantityBreak, ...]]
    promotions: tuple[Promotion, ...]
    customer_prices: dict[tuple[str, str], Decimal]
    routing: list[RoutingRule]

    def price_rules(self, tier: str, skus: Iterable[str]) -> PriceRules:
        """The rules that can touch an order of `skus` for a customer of `tier`."""
        wanted = set(skus)
        return PriceRules(
            version=f"pricing:{self.versions.get('pricing', 0)}",
            tier_prices={
                k: v for k, v in self.tier_prices.items() if k[0] == tier and k[1] in wanted
            },
            breaks=tuple(b for sku in wanted for b in self.breaks.get(sku, ())),
            promotions=tuple(p for p in self.promotions if p.sku is None or p.sku in wanted),
        )

    def special_prices(self, customer: str, skus: Iterable[str]) -> dict[str, Decimal]:
        return {
            sku: self.customer_prices[(customer, sku)]
            for sku in set(skus)
            if (customer, sku) in self.customer_prices
        }


class RuleCache:
    """Intake reads the rule versions (one small query) on every order and reloads the
    tables only when a version moved, so an edit applies to the very next order."""

    def __init__(self) -> None:
        self._snapshot: RuleSnapshot | None = None

    async def get(self, session: AsyncSession) -> RuleSnapshot:
        versions = {
            k: int(v)
            for k, v in (await session.execute(select(RuleVersion.kind, RuleVersion.version))).all()
        }
        snap = self._snapshot
        if snap is None or snap.versions != versions:
            snap = await _load_snapshot(session, versions)
            self._snapshot = snap
        return snap


async def _load_snapshot(session: AsyncSession, versions: dict[str, int]) -> RuleSnapshot:
    tier_prices = (
        await session.execute(select(TierPrice.tier, TierPrice.sku, TierPrice.unit_price))
    ).all()
    breaks: dict[str, list[QuantityBreak]] = {}
    for b in (await session.scalars(select(QuantityBreakRow))).all():
        breaks.setdefault(b.sku, []).append(QuantityBreak(b.sku, b.min_qty, b.percent_off))
    promos = (await session.scalars(select(PromotionRow).where(PromotionRow.active))).all()
    special = (
        await session.execute(
            select(CustomerPrice.customer_code, CustomerPrice.sku, CustomerPrice.unit_price)
        )
    ).all()
    routing, _ = await load_routing(session)
    return RuleSnapshot(
        versions=versions,
        tier_prices={(t, sku): price for t, sku, price in tier_prices},
        breaks={sku: tuple(rows) for sku, rows in breaks.items()},
        promotions=tuple(
            Promotion(p.code, p.kind, p.value, p.starts, p.ends, p.sku) for p in promos
        ),
        customer_prices={(c, sku): price for c, sku, price in special},
        routing=routing,
    )


async def load_routing(session: AsyncSession) -> tuple[list[RoutingRule], int]:
    rows = (
        await session.scalars(
            select(RoutingRuleRow).order_by(RoutingRuleRow.position, RoutingRuleRow.id)
        )
    ).all()
    # Validated as any caller's rule: the columns are plain strings, the rule's are Literals.
    rules = [RoutingRule.model_validate(r, from_attributes=True) for r in rows]
    return rules, await rule_version(session, "routing")


async def load_products(session: AsyncSession, skus: Iterable[str]) -> dict[str, ProductFacts]:
    rows = (await session.scalars(select(Product).where(Product.sku.in_(set(skus))))).all()
    return {
        p.sku: ProductFacts(
            sku=p.sku,
            active=p.active,
            unit_price=p.unit_price,
            floor_price=p.floor_price,
            pack_size=p.pack_size,
            min_order_qty=p.min_order_qty,
            make_to_order=p.make_to_order,
        )
        for p in rows
    }


async def load_stock(session: AsyncSession, skus: Iterable[str]) -> dict[str, StockFacts]:
    """Available now, and the expected date of the next open replenishment, per SKU."""
    next_receipt = (
        select(func.min(Replenishment.expected_date))
        .where(Replenishment.sku == Stock.sku, Replenishment.status == "open")
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(Stock.sku, Stock.on_hand - Stock.reserved, next_receipt).where(
                Stock.sku.in_(set(skus))
            )
        )
    ).all()
    return {sku: StockFacts(available=avail, next_receipt=nxt) for sku, avail, nxt in rows}


_UNBILLED_OPEN = [s.value for s in UNBILLED_OPEN]

# A customer's credit position in one round trip: its open receivables (sum, oldest due
# date) and its unbilled open orders (other than :exclude, when given). An open order that
# shipped part of itself (partial shipment) is billed for that part.
_CREDIT = text(
    """
SELECT
    (SELECT coalesce(sum(open_amount), 0) FROM receivables
     WHERE customer_code = :customer AND open_amount > 0),
    (SELECT min(due_date) FROM receivables
     WHERE customer_code = :customer AND open_amount > 0),
    (SELECT coalesce(sum(o.total - (SELECT coalesce(sum(i.amount), 0) FROM invoices i
                                    WHERE i.order_id = o.id AND i.credited IS false)), 0)
     FROM orders o
     WHERE o.customer_code = :customer AND o.status = ANY(:open)
       AND o.id IS DISTINCT FROM CAST(:exclude AS varchar))
"""
)


async def load_credit(
    session: AsyncSession, customer_code: str, today: date, exclude_order: str | None = None
) -> CreditFacts:
    """Open receivables, unbilled open orders (other than `exclude_order`), worst overdue days."""
    rec = (
        await session.execute(
            _CREDIT,
            {
                "customer": customer_code,
                "open": _UNBILLED_OPEN,
                "exclude": exclude_order,
            },
        )
    ).one()
    unbilled = rec[2]
    oldest_due: date | None = rec[1]
    overdue = max((today - oldest_due).days, 0) if oldest_due else 0
    return CreditFacts(
        open_receivables=Decimal(rec[0]),
        unbilled_open_orders=Decimal(unbilled or 0),
        max_days_overdue=overdue,
    )


async def record_event(
    session: AsyncSession,
    order_id: str,
    step_key: str,
    *,
    status: str | None,
    detail: str = "",
    actor: str = "system",
    kind: str = "status",
) -> bool:
    """Append a timeline event once per step key; False when it was already written."""
    result = await session.execute(
        insert(OrderEvent)
        .values(
            order_id=order_id,
            step_key=step_key,
            status=status,
            detail=detail,
            actor=actor,
            kind=kind,
        )
        .on_conflict_do_nothing(constraint="uq_order_events_step")
        .returning(OrderEvent.id)
    )
    fresh = result.first() is not None
    if fresh and kind == "compensation":  # rare: the KPIs count them from order_facts
        await session.execute(
            text("UPDATE order_facts SET compensations = compensations + 1 WHERE order_id = :id"),
            {"id": order_id},
        )
    return fresh


@dataclass(frozen=True)
class Moved:
    """An order changed status: from what, after how long in it."""

    order_id: str
    previous: str
    status: str
    seconds: float


class IllegalTransition(ValueError):
    """A status the order cannot move to from where it is (domain/status.py `can_move`)."""


# A new order, its first timeline entry and its KPI facts row, in one statement.
_OPEN = text(
    """
WITH o AS (
    INSERT INTO orders (id, customer_code, channel, external_ref, status, awaiting_role,
        subtotal, order_discount, total, currency, ship_to, requested_delivery_date,
        special_instructions, price_rules_version, created_by, failure_reason, allow_partial,
        priority, priority_source, routing_facts)
    VALUES (:id, :customer_code, :channel, :external_ref, :status, :awaiting_role,
        :subtotal, :order_discount, :total, :currency, CAST(:ship_to AS jsonb),
        :requested_delivery_date, :special_instructions, :price_rules_version, :created_by,
        :failure_reason, :allow_partial, :priority, :priority_source,
        CAST(:routing_facts AS jsonb))
    RETURNING id, channel, customer_code, status
), ev AS (
    INSERT INTO order_events (order_id, step_key, status, kind, actor, detail)
    SELECT id, 'received', status, 'status', :actor, :detail FROM o
)
INSERT INTO order_facts (order_id, channel, customer_code, status)
SELECT id, channel, customer_code, status FROM o
"""
)
_ORDER_COLUMNS = tuple(
    c.key for c in Order.__table__.columns if c.key not in ("created_at", "updated_at")
)


async def open_order(session: AsyncSession, order: Order, *, actor: str, detail: str) -> None:
    """Store a new order: it starts in `received`, the first entry of its timeline (its lines
    can follow). One statement, no ORM flush of the order: `order` stays a transient object
    holding the values; the columns' Python defaults apply to what it leaves unset."""
    await session.flush()  # what the caller added before it (a customer, say) goes first
    order.status = OrderStatus.RECEIVED.value
    values: dict[str, object] = {}
    for key in _ORDER_COLUMNS:
        value = getattr(order, key)
        default = Order.__table__.c[key].default
        if value is None and default is not None and default.is_scalar:
            value = default.arg
        values[key] = value
    for key in ("ship_to", "routing_facts"):
        if values[key] is not None:
            values[key] = json.dumps(values[key])
    await session.execute(_OPEN, {**values, "actor": actor, "detail": detail})


# A status change's first statement: its timeline event, once per step key, and, when the
# event is new, the move itself. The subquery locks the orders row (serialising the writers
# of one order) and reads the status it moves from; a move `can_move` does not allow
# updates nothing (answers no `previous`).
_MOVE = text(
    """
WITH ev AS (
    INSERT INTO order_events (order_id, step_key, status, kind, actor, detail)
    VALUES (:id, :key, :status, 'status', :actor, :detail)
    ON CONFLICT ON CONSTRAINT uq_order_events_step DO NOTHING
    RETURNING id
), moved AS (
    UPDATE orders o SET status = :status, awaiting_role = :role, updated_at = now()
    FROM (SELECT id, status, updated_at FROM orders WHERE id = :id FOR UPDATE) old
    WHERE o.id = old.id AND old.status = ANY(:allowed) AND EXISTS (SELECT 1 FROM ev)
    RETURNING old.status AS previous, extract(epoch FROM now() - old.updated_at) AS seconds
)
SELECT EXISTS (SELECT 1 FROM ev) AS fresh, moved.previous, moved.seconds
FROM (SELECT 1) AS one LEFT JOIN moved ON true
"""
)

# The rest of a status change, in its second statement (so its snapshot is taken once the
# first one holds the orders row lock: it reads what the order's last writer committed).
# The KPI facts (db/kpis.py): the step the order leaves becomes an order_steps row (its
# seconds until now), and order_facts records what the order reached and its quantities as
# they stand; same transaction as the event, so the same now() as its `at`. And the
# customer's notice of the move, if it has one (db/notices.py: once per order, event key and
# receiver). `prev` reads the statement's snapshot: no FOR UPDATE, which would skip the row
# the UPDATE below changes.
_FACTS = text(
    """
WITH prev AS (
    SELECT order_id, created_at, channel, customer_code, status, status_at
    FROM order_facts WHERE order_id = :id
), step AS (
    INSERT INTO order_steps (order_id, created_at, channel, customer_code, status, seconds)
    SELECT order_id, created_at, channel, customer_code, status,
           extract(epoch FROM now() - status_at) FROM prev
), notice AS (
    INSERT INTO customer_notices (order_id, event, event_key, receiver, address)
    SELECT o.id, CAST(:event AS varchar), CAST(:event_key AS varchar), r.receiver, r.address
    """
    + RECEIVERS_SQL
    + """
    WHERE o.id = :id AND r.address IS NOT NULL AND CAST(:event AS varchar) IS NOT NULL
    ON CONFLICT ON CONSTRAINT uq_customer_notices_event DO NOTHING
)
UPDATE order_facts f SET
    status = CAST(:status AS text), status_at = now(),
    validated = f.validated OR CAST(:status AS text) = 'validated',
    routed = f.routed OR CAST(:status AS text) = 'awaiting_approval',
    approved = f.approved OR CAST(:status AS text) = 'approved',
    backordered = f.backordered OR CAST(:status AS text) = 'backordered',
    dated_deliveries = f.dated_deliveries + CASE WHEN CAST(:status AS text) = 'delivered'
        AND o.requested_delivery_date IS NOT NULL THEN 1 ELSE 0 END,
    on_time = f.on_time + CASE WHEN CAST(:status AS text) = 'delivered'
        AND (now() AT TIME ZONE 'UTC')::date <= o.requested_delivery_date THEN 1 ELSE 0 END,
    completed_at = CASE WHEN CAST(:status AS text) = 'completed' THEN now()
                        ELSE f.completed_at END,
    ordered_qty = q.ordered, shipped_qty = q.shipped
FROM orders o,
     (SELECT coalesce(sum(quantity), 0) AS ordered, coalesce(sum(shipped_qty), 0) AS shipped
      FROM order_lines WHERE order_id = :id) q
WHERE f.order_id = :id AND o.id = :id
"""
)

# Which statuses each status may be reached from (domain/status.py `can_move`).
_ALLOWED_FROM: dict[OrderStatus, list[str]] = {}


def _may_come_from(status: OrderStatus) -> list[str]:
    allowed = _ALLOWED_FROM.get(status)
    if allowed is None:
        allowed = _ALLOWED_FROM[status] = [s.value for s in OrderStatus if can_move(s, status)]
    return allowed


async def apply_status(session: AsyncSession, change: StatusChange) -> Moved | None:
    """Move an order to a status with its timeline event: the one writer of `orders.status`
    after entry (open_order). A replayed step changes nothing (and answers None); a move
    `can_move` does not allow raises IllegalTransition and writes nothing. Two statements
    (_MOVE, _FACTS) whatever the status."""
    status = change.status.value
    fresh, previous, seconds = (
        await session.execute(
            _MOVE,
            {
                "id": change.order_id,
                "key": change.step_key,
                "status": status,
                "actor": change.actor,
                "detail": change.detail,
                "role": change.awaiting_role,
                "allowed": _may_come_from(change.status),
            },
        )
    ).one()
    if not fresh:
        return None
    if previous is None:
        current = await session.scalar(select(Order.status).where(Order.id == change.order_id))
        raise IllegalTransition(
            f"order {change.order_id} cannot move from {current} to {status} "
            f"(step {change.step_key})"
        )
    notice = notice_for(change.status, change.step_key)
    await session.execute(
        _FACTS,
        {
            "id": change.order_id,
            "status": status,
            "event": notice[0] if notice else None,
            "event_key": notice[1] if notice else None,
        },
    )
    moved = Moved(change.order_id, previous, status, max(float(seconds), 0.0))
    session.info.setdefault("moved", []).append(moved)
    return moved


async def next_order_id(session: AsyncSession) -> str:
    n = await session.scalar(text("SELECT nextval('order_number_seq')"))
    return f"SO-{n:07d}"
