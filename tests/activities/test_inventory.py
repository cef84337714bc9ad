"""Reservations straight against PostgreSQL: concurrency, idempotency, release."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

from sqlalchemy import func, select

from activities.inventory import InventoryActivities
from db.models import Customer, Order, OrderLine, Product, Reservation, Stock
from db.session import SessionFactory
from domain.fulfilment import Compensation
from domain.orders import OrderRef
from services.config import Settings


async def _catalogue(sessions: SessionFactory, on_hand: int) -> tuple[str, str]:
    code, sku = f"C-{uuid.uuid4().hex[:8]}", f"S-{uuid.uuid4().hex[:8]}"
    async with sessions() as s:
        s.add(
            Customer(
                code=code,
                name="c",
                tier="standard",
                credit_limit=Decimal(10**9),
                payment_terms_days=30,
                address_line1="x",
                city="x",
                postal_code="x",
                country="CN",
                status="active",
            )
        )
        s.add(
            Product(
                sku=sku,
                name="p",
                unit_price=Decimal(1),
                floor_price=Decimal(1),
                pack_size=1,
                min_order_qty=1,
                make_to_order=False,
                active=True,
                bin_location="A",
            )
        )
        await s.flush()
        s.add(Stock(sku=sku, on_hand=on_hand, reserved=0, shipped=0, received=on_hand))
        await s.commit()
    return code, sku


async def _order(sessions: SessionFactory, customer: str, sku: str, qty: int) -> str:
    order_id = f"T-{uuid.uuid4().hex[:10]}"
    async with sessions() as s:
        s.add(
            Order(
                id=order_id,
                customer_code=customer,
                channel="test",
                status="approved",
                subtotal=Decimal(qty),
                order_discount=Decimal(0),
                total=Decimal(qty),
                currency="CNY",
                ship_to={},
                price_rules_version="t",
                created_by="t",
            )
        )
        await s.flush()
        s.add(
            OrderLine(
                order_id=order_id,
                line_no=1,
                sku=sku,
                quantity=qty,
                list_price=Decimal(1),
                unit_price=Decimal(1),
                line_total=Decimal(qty),
                price_rule="list",
            )
        )
        await s.commit()
    return order_id


async def test_concurrent_reservations_never_oversell(sessions: SessionFactory, pg):
    acts = InventoryActivities(sessions, Settings(database_url=pg.url))
    customer, sku = await _catalogue(sessions, on_hand=25)
    orders = [await _order(sessions, customer, sku, qty) for qty in [3] * 20]
    results = await asyncio.gather(*[acts.reserve(OrderRef(order_id=o)) for o in orders])
    # 8 x 3 = 24 whole lines; the 25th unit goes to one more order, which waits for 2 more.
    assert sum(r.fully_reserved for r in results) == 8
    partial = [r for r in results if not r.fully_reserved and r.ready_units]
    assert [(r.ready_units, r.short) for r in partial] == [(1, {sku: 2})]
    assert all(r.short == {sku: 3} for r in results if not r.fully_reserved and not r.ready_units)
    async with sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved) == (25, 25)
        total = await s.scalar(select(func.sum(Reservation.quantity)).where(Reservation.sku == sku))
        assert total == 25


async def test_a_retried_reservation_and_a_retried_release_change_nothing(
    sessions: SessionFactory, pg
):
    acts = InventoryActivities(sessions, Settings(database_url=pg.url))
    customer, sku = await _catalogue(sessions, on_hand=10)
    order_id = await _order(sessions, customer, sku, 4)
    for _ in range(3):
        assert (await acts.reserve(OrderRef(order_id=order_id))).fully_reserved
    async with sessions() as s:
        assert (await s.get(Stock, sku)).reserved == 4
    comp = Compensation(order_id=order_id, step="reservation")
    assert await acts.release(comp) == 1
    assert await acts.release(comp) == 0
    async with sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved) == (10, 0)
