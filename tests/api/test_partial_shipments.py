"""Partial shipment: what is in stock ships now, the rest follows as a second shipment, one
invoice per shipment adding up to the order; a carrier exception is decided by ops."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from sqlalchemy import select

from activities.shipping import SimulatedCarrier
from db.models import Invoice, Receivable
from domain.orders import OrderState
from tests.utils import Stack, assert_books_balance, until
from workers.main import order_worker


async def _first_shipment_out(stack: Stack, order_id: str, within: float = 30) -> dict:
    """Wait until one shipment is out and invoiced and the order waits for the rest."""
    deadline = time.monotonic() + within
    order: dict = {}
    while time.monotonic() < deadline:
        order = (await stack.get(f"/orders/{order_id}")).json()
        if len(order["invoices"]) == 1 and order["status"] == "backordered":
            return order
        await asyncio.sleep(0.1)
    raise AssertionError(f"{order_id}: {order.get('status')} {order.get('timeline')}")


async def test_partial_shipment_ships_now_and_the_rest_later_with_an_invoice_each(stack: Stack):
    customer = await stack.customer()
    short = await stack.product(price="10.00", stock=3)
    plenty = await stack.product(price="7.33", floor="1.00", stock=100)
    r = await stack.order(customer, [(short, 5), (plenty, 3)], allow_partial_shipment=True)
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    order = await _first_shipment_out(stack, order_id)
    assert order["allow_partial"] is True
    assert [(ln["sku"], ln["shipped_qty"], ln["reserved_qty"]) for ln in order["lines"]] == [
        (short, 3, 0),
        (plenty, 3, 0),
    ]
    assert order["invoices"][0]["amount"] == "51.99"  # 3 x 10.00 + 3 x 7.33
    await assert_books_balance(stack, short, plenty)

    await stack.put(f"/inventory/{short}", {"on_hand": 10})  # wakes the order
    order = await stack.wait_status(order_id, "completed")
    assert [s["shipment_no"] for s in order["shipments"]] == [1, 2]
    assert [i["number"] for i in order["invoices"]] == [
        "INV-" + order_id.removeprefix("SO-"),
        "INV-" + order_id.removeprefix("SO-") + "-2",
    ]
    assert [i["amount"] for i in order["invoices"]] == ["51.99", "20.00"]
    assert sum(Decimal(i["amount"]) for i in order["invoices"]) == Decimal(order["total"])
    statuses = [e["status"] for e in order["timeline"] if e["kind"] == "status"]
    assert statuses.count("shipped") == 2 and statuses.count("invoiced") == 2
    stock = (await stack.get(f"/inventory/{short}")).json()
    assert (stock["on_hand"], stock["reserved"]) == (8, 0)
    async with stack.sessions() as s:
        open_amounts = (
            await s.scalars(
                select(Receivable.open_amount)
                .join(Invoice, Invoice.number == Receivable.invoice_number)
                .where(Invoice.order_id == order_id)
            )
        ).all()
    assert sorted(open_amounts) == [Decimal("20.00"), Decimal("51.99")]
    await assert_books_balance(stack, short, plenty)


async def _state(stack: Stack, order_id: str) -> OrderState:
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    return await handle.query("state", result_type=OrderState)


async def _settled_in(stack: Stack, order_id: str, status: str) -> bool:
    """The workflow has finished its task and waits in `status`: nothing is running for it
    (no workflow task, no activity), so what it decided has been done."""
    desc = (await stack.client.get_workflow_handle(f"order-{order_id}").describe()).raw_description
    idle = not desc.HasField("pending_workflow_task") and not desc.pending_activities
    return idle and (await _state(stack, order_id)).status == status


async def test_without_partial_shipment_the_order_waits_for_all_of_it(stack: Stack):
    customer = await stack.customer()
    short = await stack.product(price="10.00", stock=3)
    order_id = (await stack.order(customer, [(short, 5)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    await until(lambda: _settled_in(stack, order_id, "backordered"), "the order to settle")
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert order["status"] == "backordered" and order["shipments"] == []
    assert order["lines"][0]["reserved_qty"] == 3  # it holds what there is, first come
    await stack.put(f"/inventory/{short}", {"on_hand": 5})
    order = await stack.wait_status(order_id, "completed")
    assert len(order["shipments"]) == 1 and order["invoice"]["amount"] == "50.00"
    await assert_books_balance(stack, short)


async def test_cancelling_after_a_partial_shipment_cancels_only_the_remainder(stack: Stack):
    customer = await stack.customer()
    short = await stack.product(price="10.00", stock=3)
    other = await stack.product(price="10.00", stock=0)
    order_id = (
        await stack.order(customer, [(short, 5), (other, 2)], allow_partial_shipment=True)
    ).json()["id"]
    await _first_shipment_out(stack, order_id)
    started = time.monotonic()
    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "no longer needed"})
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 10, "answers once the remainder is undone"
    assert r.json()["failure"] is None
    order = await stack.wait_status(order_id, "completed")
    assert [(ln["shipped_qty"], ln["reserved_qty"]) for ln in order["lines"]] == [(3, 0), (0, 0)]
    assert len(order["shipments"]) == 1 and order["shipments"][0]["status"] == "delivered"
    assert [i["amount"] for i in order["invoices"]] == ["30.00"]
    assert not order["invoices"][0]["credited"]
    notes = [e["detail"] for e in order["timeline"] if e["kind"] == "note"]
    assert any(n.startswith("remainder cancelled (cancelled by admin-") for n in notes)
    await assert_books_balance(stack, short, other)


async def test_ops_call_a_shipment_lost_after_a_carrier_exception(api_stack: Stack):
    stack = api_stack
    carrier = SimulatedCarrier(transit_seconds=0, mode="exception")
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=carrier):
        customer = await stack.customer()
        sku = await stack.product(price="10.00", stock=10)
        order_id = (await stack.order(customer, [(sku, 4)])).json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alerts = (await stack.get("/alerts", role="ops")).json()
            if any(a["order_id"] == order_id and a["kind"] == "carrier_exception" for a in alerts):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no carrier_exception alert")
        wrong = await stack.post(
            f"/orders/{order_id}/carrier-exception", {"action": "lost"}, role="sales"
        )
        assert wrong.status_code == 403
        r = await stack.post(
            f"/orders/{order_id}/carrier-exception",
            {"action": "lost", "comment": "carrier confirms loss"},
            role="ops",
        )
        assert r.status_code == 200, r.text
        order = await stack.wait_status(order_id, "failed")
        assert "lost in transit" in order["failure_reason"]
        assert order["shipments"][0]["status"] == "lost"
        assert order["invoice"]["credited"] is True
        async with stack.sessions() as s:
            receivable = await s.scalar(
                select(Receivable).where(Receivable.invoice_number == order["invoice"]["number"])
            )
        assert receivable is not None and receivable.open_amount == 0
        stock = (await stack.get(f"/inventory/{sku}")).json()
        assert (stock["on_hand"], stock["reserved"]) == (6, 0), "lost goods do not come back"
        again = await stack.post(
            f"/orders/{order_id}/carrier-exception", {"action": "lost"}, role="ops"
        )
        assert again.status_code == 409
        await assert_books_balance(stack, sku)


async def test_ops_wait_out_a_carrier_exception_and_the_delivery_ends_it(api_stack: Stack):
    stack = api_stack
    slow = SimulatedCarrier(transit_seconds=3600)  # in transit until the webhook says more
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=slow):
        customer = await stack.customer()
        sku = await stack.product(price="10.00", stock=10)
        order_id = (await stack.order(customer, [(sku, 2)])).json()["id"]
        order = await stack.wait_status(order_id, "invoiced")
        tracking = order["shipments"][0]["tracking_number"]
        early = await stack.post(
            f"/orders/{order_id}/carrier-exception", {"action": "wait"}, role="ops"
        )
        assert early.status_code == 409  # nothing reported yet
        r = await stack.post(f"/shipments/{tracking}/events", {"status": "exception"}, role="ops")
        assert r.status_code == 200

        async def reported() -> bool:
            return (await _state(stack, order_id)).exception_on == tracking

        await until(reported, "the carrier exception to reach the order")
        r = await stack.post(
            f"/orders/{order_id}/carrier-exception",
            {"action": "wait", "comment": "carrier is looking"},
            role="ops",
        )
        assert r.status_code == 200, r.text
        assert r.json()["exception_on"] is None
        await stack.post(f"/shipments/{tracking}/events", {"status": "delivered"}, role="ops")
        order = await stack.wait_status(order_id, "completed")
        notes = [e["detail"] for e in order["timeline"] if e["kind"] == "note"]
        assert any("keeps waiting for " + tracking + ": carrier is looking" in n for n in notes)
        assert order["shipments"][0]["status"] == "delivered" and not order["invoice"]["credited"]
        await assert_books_balance(stack, sku)
