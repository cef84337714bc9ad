"""Orders waiting longer than expected raise alerts; a backorder gives up at its limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.shipping import SimulatedCarrier
from db.models import Alert
from tests.utils import Stack


@pytest.fixture
def ts_carrier() -> SimulatedCarrier:
    return SimulatedCarrier(transit_seconds=30 * 86400)  # a parcel that takes a month


async def _alerts(stack: Stack, order_id: str) -> set[str]:
    return {a["kind"] for a in (await stack.get("/alerts")).json() if a["order_id"] == order_id}


async def test_undelivered_shipment_raises_a_late_delivery_alert_once(
    ts_stack: Stack, time_env: WorkflowEnvironment
):
    stack = ts_stack
    customer = await stack.customer()
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(order_id, "invoiced")
    await time_env.sleep(timedelta(days=4))
    assert await _alerts(stack, order_id) == {"delivery_late"}
    await time_env.sleep(timedelta(days=4))
    assert await stack.count(Alert, Alert.order_id == order_id) == 1
    tracking = (await stack.get(f"/orders/{order_id}")).json()["shipments"][0]["tracking_number"]
    r = await stack.post(f"/shipments/{tracking}/events", {"status": "delivered"}, role="ops")
    assert r.status_code == 200
    await stack.wait_status(order_id, "completed")


async def test_backorder_alerts_after_a_day_and_cancels_after_a_week(
    ts_stack: Stack, time_env: WorkflowEnvironment
):
    stack = ts_stack
    customer = await stack.customer()
    sku = await stack.product(stock=0)
    order_id = (await stack.order(customer, [(sku, 2)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    await time_env.sleep(timedelta(hours=25))
    assert await _alerts(stack, order_id) == {"stuck_backordered"}
    # A day at a time: each skip runs the order's hourly stock rechecks, and one RPC for a
    # whole week of them can outlast its deadline on a busy machine.
    for _ in range(7):
        await time_env.sleep(timedelta(days=1))
    order = await stack.wait_status(order_id, "cancelled")
    assert "backorder not filled" in order["failure_reason"]
    assert await _alerts(stack, order_id) == {"stuck_backordered", "backorder_timeout"}
    assert (await stack.get(f"/inventory/{sku}")).json()["reserved"] == 0
