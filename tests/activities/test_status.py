"""db/repo.py apply_status and db/stock.py reserve, straight against PostgreSQL: what one
status change writes (timeline, KPI facts and steps, notice outbox), once; what a refused
move leaves (nothing); what a reservation takes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from db import repo, stock
from db.models import (
    Customer,
    Disruption,
    Order,
    OrderEvent,
    OrderFact,
    OrderLine,
    OrderStep,
    Product,
    Stock,
)
from db.session import SessionFactory
from domain.orders import StatusChange
from domain.status import OrderStatus


async def _order(sessions: SessionFactory, *, email: str | None) -> tuple[str, str]:
    """A received order (timeline, facts) of 3 units of a new SKU with 10 on hand."""
    code, sku = f"C-{uuid.uuid4().hex[:8]}", f"S-{uuid.uuid4().hex[:8]}"
    order_id = f"T-{uuid.uuid4().hex[:10]}"
    async with sessions() as s:
        s.add(
            Customer(
                code=code,
                name="c",
                tier="standard",
                credit_limit=Decimal(10**6),
                payment_terms_days=30,
                address_line1="x",
                city="x",
                postal_code="x",
                country="CN",
                status="active",
                notice_email=email,
            )
        )
        s.add(Product(sku=sku, name="p", unit_price=Decimal(1), floor_price=Decimal(1)))
        await s.flush()
        s.add(Stock(sku=sku, on_hand=10, reserved=0, shipped=0, received=10))
        await repo.open_order(
            s,
            Order(
                id=order_id,
                customer_code=code,
                channel="test",
                subtotal=Decimal(3),
                order_discount=Decimal(0),
                total=Decimal(3),
                currency="CNY",
                ship_to={},
                price_rules_version="t",
                created_by="t",
                requested_delivery_date=date(2999, 1, 1),
            ),
            actor="t",
            detail="received",
        )
        await s.flush()
        s.add(
            OrderLine(
                order_id=order_id,
                line_no=1,
                sku=sku,
                quantity=3,
                list_price=Decimal(1),
                unit_price=Decimal(1),
                line_total=Decimal(3),
                price_rule="list",
            )
        )
        await s.commit()
    return order_id, sku


async def _move(sessions: SessionFactory, order_id: str, status: OrderStatus, key: str):
    async with sessions() as s, s.begin():
        return await repo.apply_status(
            s, StatusChange(order_id=order_id, status=status, step_key=key, detail=key)
        )


async def _notices(sessions: SessionFactory, order_id: str) -> list[tuple[str, str, str]]:
    async with sessions() as s:
        rows = await s.execute(
            text(
                "SELECT event, event_key, receiver FROM customer_notices WHERE order_id = :id "
                "ORDER BY id"
            ),
            {"id": order_id},
        )
        return [tuple(r) for r in rows]


async def test_a_status_change_writes_its_rows_once(sessions: SessionFactory):
    order_id, _ = await _order(sessions, email="buyer@example.com")
    for status in (OrderStatus.VALIDATED, OrderStatus.APPROVED, OrderStatus.RESERVED):
        moved = await _move(sessions, order_id, status, status.value)
        assert moved is not None and moved.status == status.value
    assert moved.previous == OrderStatus.APPROVED.value
    # The same step again (a retried activity): nothing moves, nothing more is written.
    assert await _move(sessions, order_id, OrderStatus.RESERVED, "reserved") is None
    async with sessions() as s:
        events = (
            await s.scalars(
                select(OrderEvent.step_key)
                .where(OrderEvent.order_id == order_id)
                .order_by(OrderEvent.id)
            )
        ).all()
        assert events == ["received", "validated", "approved", "reserved"]
        fact = await s.get_one(OrderFact, order_id)
        assert (fact.status, fact.validated, fact.approved, fact.backordered) == (
            "reserved",
            True,
            True,
            False,
        )
        assert (fact.ordered_qty, fact.shipped_qty) == (3, 0)
        steps = (
            await s.scalars(
                select(OrderStep.status)
                .where(OrderStep.order_id == order_id)
                .order_by(OrderStep.id)
            )
        ).all()
        assert steps == ["received", "validated", "approved"]
        order = await s.get_one(Order, order_id)
        assert order.status == "reserved"
    # "reserved" tells the customer (once, by e-mail: no webhook, no channel receiver).
    assert await _notices(sessions, order_id) == [("confirmed", "confirmed", "email")]


async def test_a_customer_without_receivers_gets_no_notice(sessions: SessionFactory):
    order_id, _ = await _order(sessions, email=None)
    for status in (OrderStatus.VALIDATED, OrderStatus.APPROVED, OrderStatus.RESERVED):
        assert await _move(sessions, order_id, status, status.value) is not None
    assert await _notices(sessions, order_id) == []


async def test_a_refused_move_writes_nothing(sessions: SessionFactory):
    order_id, _ = await _order(sessions, email="buyer@example.com")
    with pytest.raises(repo.IllegalTransition, match="cannot move from received to shipped"):
        await _move(sessions, order_id, OrderStatus.SHIPPED, "shipped:1")
    async with sessions() as s:
        events = await s.scalar(
            select(func.count()).select_from(OrderEvent).where(OrderEvent.order_id == order_id)
        )
        assert events == 1
        assert (await s.get_one(Order, order_id)).status == "received"
        assert (await s.get_one(OrderFact, order_id)).status == "received"
    assert await _notices(sessions, order_id) == []


async def test_reserve_takes_what_is_there_unless_disrupted(sessions: SessionFactory):
    _, sku = await _order(sessions, email=None)
    async with sessions() as s, s.begin():
        assert await stock.reserve(s, sku, 4) == 4
        assert await stock.reserve(s, sku, 10) == 6  # the rest
        assert await stock.reserve(s, sku, 1) == 0  # nothing left
        assert await stock.reserve(s, "NO-SUCH-SKU", 1) == 0
    async with sessions() as s, s.begin():
        row = await s.get_one(Stock, sku)
        assert (row.on_hand, row.reserved) == (10, 10)
        await stock.release(s, sku, 5)
        s.add(Disruption(sku=sku, until=date(2999, 1, 1), reason="flood", created_by="t"))
    async with sessions() as s, s.begin():
        assert await stock.reserve(s, sku, 1) == 0  # held back while the disruption lasts
    async with sessions() as s:
        assert (await s.get_one(Stock, sku)).reserved == 5


async def test_reserve_sees_a_disruption_declared_while_it_waited(sessions: SessionFactory):
    """A disruption is declared under the SKU's row lock; a reservation that waited for that
    lock must see it once the declaration commits (and take nothing)."""
    _, sku = await _order(sessions, email=None)
    async with sessions() as declare:
        await declare.begin()
        await declare.execute(text("SELECT 1 FROM stock WHERE sku = :sku FOR UPDATE"), {"sku": sku})
        declare.add(Disruption(sku=sku, until=date(2999, 1, 1), reason="flood", created_by="t"))
        await declare.flush()

        async def reserve() -> int:
            async with sessions() as s, s.begin():
                return await stock.reserve(s, sku, 3)

        waiting = asyncio.create_task(reserve())
        await asyncio.sleep(0.5)
        assert not waiting.done()  # it waits for the row lock
        await declare.commit()
    assert await asyncio.wait_for(waiting, 10) == 0
    async with sessions() as s:
        assert (await s.get_one(Stock, sku)).reserved == 0
