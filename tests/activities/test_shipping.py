"""The carrier activities against the simulated carrier: a cancelled activity cancels its
carrier call."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.testing import ActivityEnvironment

from activities.shipping import ShippingActivities, SimulatedCarrier
from db.session import SessionFactory
from domain.shipping import Booking, ShipmentRequest
from services.config import Settings


class SlowCarrier(SimulatedCarrier):
    """Books after `delay_seconds`; says when a booking call has started."""

    def __init__(self, delay_seconds: float):
        super().__init__(transit_seconds=0, delay_seconds=delay_seconds)
        self.calling = asyncio.Event()

    async def book(self, req: ShipmentRequest, attempt: int) -> Booking:
        self.calling.set()
        return await super().book(req, attempt)


async def test_cancelling_the_booking_activity_cancels_the_carrier_call(
    sessions: SessionFactory, pg
):
    carrier = SlowCarrier(delay_seconds=300)
    acts = ShippingActivities(sessions, Settings(database_url=pg.url), carrier)
    env = ActivityEnvironment()
    req = ShipmentRequest(order_id=f"T-{uuid.uuid4().hex[:10]}", shipment_no=1, packages=1)
    booking = asyncio.create_task(env.run(acts.book, req))
    await asyncio.wait_for(carrier.calling.wait(), timeout=10)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(booking, timeout=10)
    # The carrier call was cancelled with the activity, not left running on its own.
    assert carrier.abandoned == [(req.order_id, 1)]


async def test_a_booking_that_finishes_is_returned_and_nothing_is_abandoned(
    sessions: SessionFactory, pg
):
    carrier = SlowCarrier(delay_seconds=0)
    acts = ShippingActivities(sessions, Settings(database_url=pg.url), carrier)
    req = ShipmentRequest(order_id=f"T-{uuid.uuid4().hex[:10]}", shipment_no=2, packages=1)
    booking = await ActivityEnvironment().run(acts.book, req)
    assert booking.tracking_number == SimulatedCarrier.tracking_number(req.order_id, 2)
    assert carrier.abandoned == []
