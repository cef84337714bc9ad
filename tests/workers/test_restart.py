"""A worker that dies mid-order: the next one finishes it, and nothing happens twice."""

from __future__ import annotations

from sqlalchemy import select
from temporalio.api.enums.v1 import PendingActivityState

from activities.shipping import SimulatedCarrier
from db.models import Invoice, Order, Reservation, Shipment, Stock
from tests.utils import Stack, until
from workers.main import order_worker


async def _status(stack: Stack, order_id: str) -> str:
    async with stack.sessions() as s:
        return str(await s.scalar(select(Order.status).where(Order.id == order_id)))


async def _booking_in_flight(stack: Stack, order_id: str) -> bool:
    """A worker has started an attempt of the carrier booking (it is at the carrier now)."""
    desc = await stack.client.get_workflow_handle(f"order-{order_id}").describe()
    return any(
        a.activity_type.name == "shipping.book"
        and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for a in desc.raw_description.pending_activities
    )


async def test_worker_restart_mid_booking_finishes_exactly_once(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    slow = SimulatedCarrier(transit_seconds=0, delay_seconds=30)
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=slow):
        order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
        await until(lambda: _booking_in_flight(stack, order_id), "the booking in flight")
        assert await _status(stack, order_id) == "packed"
    # The first worker is gone mid-booking (its carrier call cut short with it); a fresh
    # one picks the order up and books again, the same booking.
    assert slow.abandoned == [(order_id, 1)]
    async with order_worker(stack.client, stack.sessions, stack.settings):
        order = await stack.wait_status(order_id, "completed", within=60)
    assert [e["status"] for e in order["timeline"]].count("shipped") == 1
    assert await stack.count(Reservation, Reservation.order_id == order_id) == 1
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 1
    assert await stack.count(Invoice, Invoice.order_id == order_id) == 1
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved, stock.shipped) == (6, 0, 4)
