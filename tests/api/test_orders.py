"""The order API end to end on the real stack: happy path, validation, idempotency."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from db.models import Order, Receivable, Reservation, Shipment, Stock
from tests.utils import Stack

PIPELINE = [
    "received",
    "validated",
    "approved",
    "reserved",
    "picking",
    "packed",
    "shipped",
    "invoiced",
    "delivered",
    "completed",
]


async def test_happy_path_reaches_completed_with_stock_receivable_and_timeline(stack: Stack):
    customer = await stack.customer(tier="gold", terms=45)
    a = await stack.product(price="12.50", stock=100, bin_location="B-02-01")
    b = await stack.product(
        price="4.20", floor="3.00", stock=50, pack=10, moq=10, bin_location="A-01-01"
    )

    r = await stack.order(customer, [(a, 10), (b, 20)], key="happy-1")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "received"
    # gold tier: 5 % off list, rounded per unit to cents half-up
    assert [ln["unit_price"] for ln in created["lines"]] == ["11.88", "3.99"]
    assert created["total"] == "198.60"

    order = await stack.wait_status(created["id"], "completed")
    assert [e["status"] for e in order["timeline"] if e["kind"] == "status"] == PIPELINE
    assert order["invoice"]["amount"] == "198.60"
    assert order["invoice"]["due_date"] == str(date.today() + timedelta(days=45))
    assert [s["status"] for s in order["shipments"]] == ["delivered"]
    assert all(ln["shipped_qty"] == ln["quantity"] for ln in order["lines"])
    picking = next(e for e in order["timeline"] if e["status"] == "picking")
    assert picking["detail"].index(b) < picking["detail"].index(a), "pick list in bin order"

    for sku, on_hand in ((a, 90), (b, 30)):
        inv = (await stack.get(f"/inventory/{sku}")).json()
        assert inv == {"sku": sku, "on_hand": on_hand, "reserved": 0, "available": on_hand}
    async with stack.sessions() as s:
        rec = (
            await s.scalars(select(Receivable).where(Receivable.customer_code == customer))
        ).one()
        assert rec.open_amount == Decimal("198.60")
    cust = (await stack.get(f"/customers/{customer}")).json()
    assert cust["exposure"] == "198.60"
    assert Decimal(cust["available_credit"]) == Decimal("1000000.00") - Decimal("198.60")

    # Ops find it in Temporal visibility by status (eventually consistent).
    for _ in range(50):
        found = [
            w.id
            async for w in stack.client.list_workflows(
                f'OrderStatus="completed" AND CustomerCode="{customer}"'
            )
        ]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [f"order-{created['id']}"]

    # A carrier repeating its webhook after the order ended: a 200, kept on the timeline.
    tracking = order["shipments"][0]["tracking_number"]
    r = await stack.post(f"/shipments/{tracking}/events", {"status": "delivered"}, role="ops")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "recorded" and r.json()["order_status"] == "completed"
    order = (await stack.get(f"/orders/{created['id']}")).json()
    assert order["status"] == "completed"
    assert any("after the order ended" in e["detail"] for e in order["timeline"])


async def test_validation_collects_every_problem_with_loc_and_code(stack: Stack):
    customer = await stack.customer()
    packed = await stack.product(pack=6, moq=12)
    before = await stack.count(Order)
    r = await stack.post(
        "/orders",
        {
            "customer_code": customer,
            "channel": "api",
            "requested_delivery_date": str(date.today() - timedelta(days=1)),
            "lines": [
                {"sku": "NO-SUCH-SKU", "quantity": 1},
                {"sku": packed, "quantity": 7},
                {"sku": packed, "quantity": 12},
                {"sku": packed + "X", "quantity": 0},
            ],
        },
        role="sales",
    )
    assert r.status_code == 422
    got = {(tuple(p["loc"]), p["code"]) for p in r.json()["detail"]}
    assert got == {
        (("requested_delivery_date",), "date_in_past"),
        (("lines", 0, "sku"), "unknown_sku"),
        (("lines", 1, "quantity"), "below_min_order_qty"),
        (("lines", 1, "quantity"), "pack_size_multiple"),
        (("lines", 2, "sku"), "duplicate_sku"),
        (("lines", 3, "sku"), "unknown_sku"),
        (("lines", 3, "quantity"), "quantity_not_positive"),  # the same line, reported at once
    }
    assert all(p["message"] for p in r.json()["detail"])
    assert await stack.count(Order) == before, "a refused order writes no order"


async def test_unknown_and_held_customers_are_refused(stack: Stack):
    sku = await stack.product()
    held = await stack.customer(status="on_hold")
    r = await stack.order("NOBODY", [(sku, 1)])
    assert r.status_code == 422
    assert r.json()["detail"][0]["code"] == "unknown_customer"
    r = await stack.order(held, [(sku, 1)])
    assert r.status_code == 422
    assert [p["code"] for p in r.json()["detail"]] == ["customer_on_hold"]


async def test_malformed_body_is_a_422_naming_the_field(stack: Stack):
    r = await stack.post(
        "/orders", {"customer_code": "X", "lines": [{"sku": "A", "quantity": "many"}]}
    )
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "lines", 0, "quantity"]
    assert problem["code"] == "int_parsing"
    r = await stack.post("/orders", {"customer_code": "X", "lines": []})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "lines"]


async def test_idempotency_key_replays_the_same_answer(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    first = await stack.order(customer, [(sku, 2)], key="idem-A")
    again = await stack.order(customer, [(sku, 2)], key="idem-A")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await stack.order(customer, [(sku, 3)], key="idem-A")
    assert other.status_code == 422
    assert other.json()["detail"][0]["code"] == "idempotency_key_reused"
    assert await stack.count(Order, Order.customer_code == customer) == 1


async def test_fifty_concurrent_posts_of_one_key_make_one_order_and_one_workflow(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    answers = await asyncio.gather(
        *[stack.order(customer, [(sku, 1)], key="idem-storm") for _ in range(50)]
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["id"] for r in answers}) == 1
    assert await stack.count(Order, Order.customer_code == customer) == 1
    order_id = answers[0].json()["id"]
    await stack.wait_status(order_id, "completed")
    # Visibility lags behind the history: wait until it lists the order's runs at all.
    query = f'WorkflowId="order-{order_id}"'
    runs = [w async for w in stack.client.list_workflows(query)]
    deadline = time.monotonic() + 30
    while not runs and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        runs = [w async for w in stack.client.list_workflows(query)]
    assert [(w.id, w.workflow_type) for w in runs] == [(f"order-{order_id}", "OrderWorkflow")]
    history = await stack.client.get_workflow_handle(f"order-{order_id}").fetch_history()
    kind = "workflow_execution_started_event_attributes"
    assert history.events[0].HasField(kind)
    assert sum(e.HasField(kind) for e in history.events) == 1
    attrs = history.events[0].workflow_execution_started_event_attributes
    assert attrs.workflow_type.name == "OrderWorkflow"
    assert attrs.task_queue.name == stack.settings.task_queue
    assert runs[0].run_id == attrs.original_execution_run_id
    assert await stack.count(Reservation, Reservation.order_id == order_id) == 1


async def test_scarce_stock_is_never_oversold(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=7)
    answers = await asyncio.gather(*[stack.order(customer, [(sku, 1)]) for _ in range(20)])
    ids = [r.json()["id"] for r in answers]
    final = await asyncio.gather(*[stack.wait_status(i, "completed", "backordered") for i in ids])
    assert sum(o["status"] == "completed" for o in final) == 7
    assert sum(o["status"] == "backordered" for o in final) == 13
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None
        assert (stock.on_hand, stock.reserved, stock.shipped) == (0, 0, 7)
    # Replenishment wakes the waiting orders through signals, oldest first.
    assert (await stack.put(f"/inventory/{sku}", {"on_hand": 13})).status_code == 200
    final = await asyncio.gather(*[stack.wait_status(i, "completed") for i in ids])
    assert await stack.count(Shipment, Shipment.order_id.in_(ids)) == 20


async def test_order_listing_filters_by_status_and_customer(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    ids = [(await stack.order(customer, [(sku, 1)])).json()["id"] for _ in range(3)]
    for i in ids:
        await stack.wait_status(i, "completed")
    page = (await stack.get("/orders", params={"customer_code": customer, "limit": 2})).json()
    assert [o["id"] for o in page["items"]] == sorted(ids, reverse=True)[:2]
    rest = (
        await stack.get(
            "/orders", params={"customer_code": customer, "cursor": page["next_cursor"]}
        )
    ).json()
    assert [o["id"] for o in rest["items"]] == [min(ids)]
    assert rest["next_cursor"] is None
    none = (
        await stack.get("/orders", params={"customer_code": customer, "status": "backordered"})
    ).json()
    assert none["items"] == []


async def test_metrics_count_intake_and_report_state(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.order(customer, [(sku, 0)])
    await stack.wait_status(order_id, "completed")
    text = (await stack.http.get("/metrics")).text
    assert 'orderflow_orders_started_total{channel="api"}' in text
    assert 'orderflow_orders_refused_total{channel="api"}' in text
    assert "orderflow_intake_seconds_bucket" in text
    assert 'orderflow_orders{status="completed"}' in text
    # the worker runs in this process, so its counters are here too
    assert 'orderflow_orders_finished_total{outcome="completed"}' in text
    assert 'orderflow_step_seconds_count{status="packed"}' in text
    history = (await stack.get(f"/orders/{order_id}/history")).json()
    assert history["temporal_ui_url"].endswith(f"/workflows/order-{order_id}")
    order = (await stack.get(f"/orders/{order_id}")).json()
    timed = [e for e in order["timeline"] if e["kind"] == "status"]
    assert all(e["seconds_in_status"] is not None for e in timed[:-1])
    assert timed[-1]["status"] == "completed" and timed[-1]["seconds_in_status"] is None
