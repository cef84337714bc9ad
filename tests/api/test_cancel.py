"""POST /orders/{id}/cancel: 200 once it took effect, 202 when the order accepted it but is
busy in a step, 409 only when it can never happen; the carrier call goes with the booking."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from activities.shipping import SimulatedCarrier
from db.models import Invoice, Shipment
from db.session import SessionFactory
from domain.shipping import Booking, ShipmentRequest
from orderflow.embedded import EmbeddedPostgres
from tests import conftest
from tests.utils import Stack
from workers.main import order_worker


class SlowCarrier(SimulatedCarrier):
    """Books after 5 minutes (a cancel always finds the booking in flight); a cancellation
    at the carrier waits for the test's `gate`."""

    def __init__(self) -> None:
        super().__init__(transit_seconds=0, delay_seconds=300)
        self.calling = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.cancelled: list[tuple[str, int]] = []

    async def book(self, req: ShipmentRequest, attempt: int) -> Booking:
        self.calling.set()
        return await super().book(req, attempt)

    async def cancel(self, order_id: str, shipment_no: int) -> None:
        await self.gate.wait()
        self.cancelled.append((order_id, shipment_no))


async def test_a_cancel_during_booking_cancels_the_carrier_call_and_answers_200(
    api_stack: Stack,
):
    stack = api_stack
    carrier = SlowCarrier()
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=carrier):
        order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
        await asyncio.wait_for(carrier.calling.wait(), timeout=30)
        r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "changed my mind"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["cancel"] == "completed"
        # The booking call in flight was cancelled with its activity (not left to book on),
        # and the booking the carrier may have taken is cancelled by the compensation.
        assert carrier.abandoned == [(order_id, 1)]
        assert carrier.cancelled == [(order_id, 1)]
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 0
    assert (await stack.get(f"/inventory/{sku}")).json()["reserved"] == 0


async def test_a_cancel_that_will_happen_answers_202_and_then_takes_effect(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    settings = conftest.test_settings(pg, cancel_wait_seconds=1.0)
    carrier = SlowCarrier()
    carrier.gate.clear()  # the carrier takes its time to cancel the booking
    async with conftest.running_api(settings, sessions, client) as stack:
        customer = await stack.customer()
        sku = await stack.product(stock=10)
        async with order_worker(client, sessions, settings, carrier=carrier):
            order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
            await asyncio.wait_for(carrier.calling.wait(), timeout=30)

            r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "duplicate"})
            assert r.status_code == 202, r.text
            body = r.json()
            assert body["cancel"] == "pending"
            assert body["order_id"] == order_id and body["status"] == "packed"
            assert body["cancel_reason"] == "duplicate"
            # Asked again meanwhile: the same pending cancel, not a refusal.
            again = await stack.post(f"/orders/{order_id}/cancel", {"reason": "duplicate"})
            assert again.status_code == 202, again.text
            assert again.json()["cancel"] == "pending"

            carrier.gate.set()
            order = await stack.wait_status(order_id, "cancelled")
            assert carrier.cancelled == [(order_id, 1)]
            assert "cancelled by " in order["failure_reason"]
            # Over now: it can never be cancelled (again), and only now is that a 409.
            late = await stack.post(f"/orders/{order_id}/cancel", {"reason": "late"})
            assert late.status_code == 409, late.text
        assert await stack.count(Shipment, Shipment.order_id == order_id) == 0
        assert await stack.count(Invoice, Invoice.order_id == order_id) == 0

        spec = (await stack.http.get("/openapi.json")).json()
        responses = spec["paths"]["/orders/{order_id}/cancel"]["post"]["responses"]
        for code in ("200", "202"):
            schema = responses[code]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/CancelOut"), (code, schema)


async def test_409_only_when_the_order_can_never_be_cancelled(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    shipped = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(shipped, "completed")
    r = await stack.post(f"/orders/{shipped}/cancel", {"reason": "too late"})
    assert r.status_code == 409 and "shipped" in r.json()["detail"], r.text

    tight = await stack.customer(limit="1.00")
    rejected = (await stack.order(tight, [(sku, 1)])).json()["id"]
    await stack.wait_status(rejected, "awaiting_approval")
    r = await stack.post(
        f"/orders/{rejected}/decision", {"decision": "reject"}, role="credit_controller"
    )
    assert r.status_code == 200, r.text
    await stack.wait_status(rejected, "rejected")
    r = await stack.post(f"/orders/{rejected}/cancel", {"reason": "too late"})
    assert r.status_code == 409, r.text


async def test_a_cancel_landing_during_the_first_pass_gives_the_stock_back(api_stack: Stack):
    """The first pass reserves, picks and packs in the assessment's step; a cancel accepted
    before it ran stops the order right after it, and the stock must come back."""
    from tests.utils import until
    from tests.workflows.test_races import _admitted

    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    # No worker yet: the order's first workflow task will hold its start and the cancel.
    order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
    cancel = asyncio.create_task(
        stack.post(f"/orders/{order_id}/cancel", {"reason": "typed the wrong order"})
    )
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    await until(
        lambda: _admitted(stack.client, handle, f"cancel-{order_id}"), "the cancel admitted"
    )
    async with order_worker(stack.client, stack.sessions, stack.settings):
        r = await cancel
        assert r.status_code in (200, 202), r.text
        await stack.wait_status(order_id, "cancelled")
    stock = (await stack.get(f"/inventory/{sku}")).json()
    assert (stock["on_hand"], stock["reserved"]) == (10, 0), stock
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 0
