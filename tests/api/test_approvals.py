"""Approvals and cancellation through the API: 200 / 403 / 409, routing, compensation."""

from __future__ import annotations

from decimal import Decimal

from db.models import Reservation, Stock
from tests.utils import Stack


async def test_over_credit_limit_waits_for_credit_controller_then_completes(stack: Stack):
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 20)])).json()["id"]
    order = await stack.wait_status(order_id, "awaiting_approval")
    assert order["awaiting_role"] == "credit_controller"
    assert order["approvals"][0]["reason"] == "exposure 200.00 over limit 100.00"

    inbox = (await stack.get("/approvals", role="credit_controller")).json()
    assert [i["order_id"] for i in inbox if i["customer_code"] == customer] == [order_id]
    assert (await stack.get("/approvals", role="director")).json() == [
        i
        for i in (await stack.get("/approvals", role="director")).json()
        if i["customer_code"] != customer
    ]

    wrong = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="sales_manager"
    )
    assert wrong.status_code == 403
    assert "credit_controller" in wrong.json()["detail"]
    ok = await stack.post(
        f"/orders/{order_id}/decision",
        {"decision": "approve", "comment": "known customer"},
        role="credit_controller",
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["approvals"][0]["status"] == "approved"
    again = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert again.status_code == 409
    order = await stack.wait_status(order_id, "completed")
    (approval,) = order["approvals"]
    assert approval["status"] == "approved" and approval["comment"] == "known customer"
    assert approval["decided_by"].startswith("credit_controller-")


async def test_multi_level_chain_and_rejection(stack: Stack):
    customer = await stack.customer(limit="10.00")
    sku = await stack.product(price="10.00", stock=100)
    r = await stack.order(customer, [(sku, 5)], special_instructions="deliver to dock 4")
    order_id = r.json()["id"]
    order = await stack.wait_status(order_id, "awaiting_approval")
    assert order["awaiting_role"] == "credit_controller"
    r = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 200
    assert r.json()["awaiting_role"] == "ops", "the next level follows at once"
    r = await stack.post(
        f"/orders/{order_id}/decision",
        {"decision": "reject", "comment": "dock 4 closed"},
        role="ops",
    )
    assert r.status_code == 200
    order = await stack.wait_status(order_id, "rejected")
    assert [(a["role"], a["status"]) for a in order["approvals"]] == [
        ("credit_controller", "approved"),
        ("ops", "rejected"),
    ]
    assert "dock 4 closed" in order["failure_reason"]
    assert await stack.count(Reservation, Reservation.order_id == order_id) == 0


async def test_requested_price_below_floor_routes_to_sales_manager(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="8.00")
    r = await stack.post(
        "/orders",
        {"customer_code": customer, "lines": [{"sku": sku, "quantity": 1, "unit_price": "7.50"}]},
        role="sales",
    )
    assert r.status_code == 201
    line = r.json()["lines"][0]
    assert line["unit_price"] == "7.50" and line["override_deviation"] == "-2.50"
    order = await stack.wait_status(r.json()["id"], "awaiting_approval")
    assert order["awaiting_role"] == "sales_manager"
    assert "below floor" in order["approvals"][0]["reason"]


async def test_decision_when_nothing_is_pending_is_409(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(order_id, "completed")
    r = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 409


async def test_cancel_while_awaiting_approval_releases_nothing_and_ends_cancelled(stack: Stack):
    customer = await stack.customer(limit="1.00")
    sku = await stack.product(stock=10)
    order_id = (await stack.order(customer, [(sku, 3)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    r = await stack.post(
        f"/orders/{order_id}/cancel", {"reason": "customer changed mind"}, role="sales"
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    order = await stack.wait_status(order_id, "cancelled")
    assert order["approvals"][0]["status"] == "cancelled"
    assert "customer changed mind" in order["failure_reason"]
    assert (await stack.get(f"/inventory/{sku}")).json()["reserved"] == 0


async def test_cancel_after_reservation_releases_stock_exactly_once(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=5)
    order_id = (
        await stack.order(
            customer,
            [
                (sku, 5),
            ],
        )
    ).json()["id"]
    short = (await stack.order(customer, [(sku, 5)])).json()["id"]
    await stack.wait_status(order_id, "completed")
    await stack.wait_status(short, "backordered")
    await stack.put(f"/inventory/{sku}", {"on_hand": 3})  # still short: stays backordered
    r = await stack.post(f"/orders/{short}/cancel", {"reason": "too slow"}, role="sales")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await stack.post(f"/orders/{short}/cancel", {"reason": "twice"}, role="sales")
    assert r.status_code == 409
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved) == (3, 0)


async def test_cancel_after_shipment_is_409_and_says_return(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(order_id, "completed")
    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "late"}, role="sales")
    assert r.status_code == 409
    assert "return" in r.json()["detail"]


async def test_auth_missing_bad_and_wrong_role(stack: Stack):
    assert (await stack.http.get("/orders")).status_code == 401
    bad = await stack.http.get("/orders", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    r = await stack.post(
        "/products",
        {"sku": "X", "name": "x", "unit_price": "1", "floor_price": "1"},
        role="channel",
    )
    assert r.status_code == 403
    r = await stack.post("/customers", {"code": "X"}, role="channel")
    assert r.status_code == 403


async def test_stock_cannot_drop_below_reserved(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=3)
    # Short of 2: the order holds the 3 there are and waits, backordered, for the rest.
    order_id = (await stack.order(customer, [(sku, 5)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    before = (await stack.get(f"/inventory/{sku}")).json()
    assert before == {"sku": sku, "on_hand": 3, "reserved": 3, "available": 0}

    r = await stack.put(f"/inventory/{sku}", {"on_hand": 2})  # a valid count, below reserved
    assert r.status_code == 409, r.text
    assert "below the 3 unit(s) reserved" in r.json()["detail"]
    assert (await stack.get(f"/inventory/{sku}")).json() == before
    async with stack.sessions() as s:
        stock = await s.get(Stock, sku)
        assert stock is not None and (stock.on_hand, stock.reserved, stock.received) == (3, 3, 3)
    # A negative count is refused before that, naming the field.
    r = await stack.put(f"/inventory/{sku}", {"on_hand": -1})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "on_hand"]

    # Down to exactly what is reserved is allowed; stock for the rest completes the order.
    assert (await stack.put(f"/inventory/{sku}", {"on_hand": 3})).status_code == 200
    assert (await stack.put(f"/inventory/{sku}", {"on_hand": 5})).status_code == 200
    order = await stack.wait_status(order_id, "completed")
    assert Decimal(order["total"]) == Decimal("50.00")
