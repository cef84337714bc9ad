"""A worker that dies mid-order: the next one finishes it, and nothing happens twice."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from orderflow.activities.shipping import SimulatedCarrier
from orderflow.db.models import Invoice, Order, Reservation, Shipment, Stock
from orderflow.workers.main import order_worker
from tests.utils import Stack


async def _status(stack: Stack, order_id: str) -> str:
    async with stack.sessions() as s:
        return str(await s.scalar(select(Order.status).where(Order.id == order_id)))


async def test_worker_restart_mid_booking_finishes_exactly_once(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    slow = SimulatedCarrier(transit_seconds=0, delay_seconds=30)
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=slow):
        order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
        for _ in range(200):
            if await _status(stack, order_id) == "packed":
                break
            await asyncio.sleep(0.05)
        assert await _status(stack, order_id) == "packed"
        await asyncio.sleep(0.5)  # the carrier booking is now in flight
    # The first worker is gone mid-booking; a fresh one picks the order up.
    async with order_worker(stack.client, stack.sessions, stack.settings):
        order = await stack.wait_status(order_id, "completed", within=60)
    assert [e["status"] for e in order["timeline"]].count("shipped") == 1
    assert await stack.count(Reservation, Reservation.order_id == order_id) == 1
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 1
    assert await stack.count(Invoice, Invoice.order_id == order_id) == 1
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved, stock.shipped) == (6, 0, 4)
