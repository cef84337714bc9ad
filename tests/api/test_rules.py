"""Business rules through the API on a running workflow: pricing, preview, stock at entry,
credit (limit and overdue), and every routing outcome, including rules frozen per order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from sqlalchemy import update

from db.models import Order, Receivable
from tests.utils import Stack


@pytest.fixture
async def routing_restored(stack: Stack) -> AsyncIterator[Stack]:
    """Tests that edit the routing table put it back afterwards."""
    saved = (await stack.get("/routing-rules")).json()
    yield stack
    r = await stack.http.put(
        "/routing-rules", json={"rules": saved["rules"]}, headers=stack.auth("admin")
    )
    assert r.status_code == 200


async def test_price_lists_breaks_promotions_and_customer_prices(stack: Stack):
    customer = await stack.customer(tier="silver")
    special = await stack.customer(tier="silver")
    sku = await stack.product(price="100.00", floor="50.00")
    today = date.today()
    for path, body in [
        (f"/price-lists/silver/{sku}", {"unit_price": "90.00"}),
        ("/quantity-breaks", {"sku": sku, "min_qty": 10, "percent_off": "10"}),
        (f"/customers/{special}/prices/{sku}", {"unit_price": "70.00"}),
    ]:
        r = await stack.http.put(path, json=body, headers=stack.auth("sales_manager"))
        assert r.status_code == 200, r.text
    promo = {
        "code": f"P{sku}",
        "kind": "amount",
        "value": "1.00",
        "sku": sku,
        "starts": str(today),
        "ends": str(today + timedelta(days=1)),
    }
    r = await stack.http.put(f"/promotions/P{sku}", json=promo, headers=stack.auth("admin"))
    assert r.status_code == 200

    created = (await stack.order(customer, [(sku, 10)])).json()
    (line,) = created["lines"]
    # 90.00 silver list, -10 % from 10 units = 81.00, -1.00 promotion = 80.00
    assert line["unit_price"] == "80.00"
    assert line["price_rule"] == f"price_list:silver+break>=10:-10%+promo:P{sku}"
    assert created["total"] == "800.00"
    order = await stack.wait_status(created["id"], "completed")
    assert order["rules_version"].startswith("pricing:")

    line = (await stack.order(special, [(sku, 10)])).json()["lines"][0]
    assert (line["unit_price"], line["price_rule"]) == ("70.00", "customer_price")

    refused = await stack.http.put(
        f"/price-lists/gold/{sku}", json={"unit_price": "1"}, headers=stack.auth("sales")
    )
    assert refused.status_code == 403
    unknown = await stack.http.put(
        "/price-lists/gold/NOPE", json={"unit_price": "1"}, headers=stack.auth("admin")
    )
    assert unknown.status_code == 422


async def test_preview_prices_without_creating(stack: Stack):
    customer = await stack.customer(tier="gold")
    sku = await stack.product(price="10.00", floor="5.00")
    before = await stack.count(Order)
    r = await stack.post(
        "/pricing/preview", {"customer_code": customer, "lines": [{"sku": sku, "quantity": 3}]}
    )
    assert r.status_code == 200
    assert (r.json()["valid"], r.json()["total"]) == (True, "28.50")
    bad = await stack.post(
        "/pricing/preview", {"customer_code": customer, "lines": [{"sku": sku, "quantity": 0}]}
    )
    assert bad.json()["problems"][0]["code"] == "quantity_not_positive"
    assert await stack.count(Order) == before


async def test_stock_at_entry_says_what_is_available_and_when_more_comes(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=4)
    eta = date.today() + timedelta(days=9)
    r = await stack.post(
        f"/inventory/{sku}/replenishments", {"quantity": 20, "expected_date": str(eta)}, role="ops"
    )
    assert r.status_code == 201
    replenishment = r.json()["id"]
    created = (await stack.order(customer, [(sku, 10)])).json()
    line = created["lines"][0]
    assert (line["available"], line["short"], line["expected_date"]) == (4, 6, str(eta))
    await stack.wait_status(created["id"], "backordered")
    r = await stack.post(f"/inventory/replenishments/{replenishment}/receive", {}, role="ops")
    assert r.status_code == 200 and r.json()["on_hand"] == 24
    await stack.wait_status(created["id"], "completed")
    again = await stack.post(f"/inventory/replenishments/{replenishment}/receive", {}, role="ops")
    assert again.status_code == 409


async def test_overdue_receivable_routes_to_credit_controller(stack: Stack):
    customer = await stack.customer(limit="1000000.00")
    sku = await stack.product(price="10.00")
    earlier = (await stack.order(customer, [(sku, 5)])).json()["id"]
    await stack.wait_status(earlier, "completed")
    async with stack.sessions() as s:  # that invoice fell due 20 days ago and is unpaid
        await s.execute(
            update(Receivable)
            .where(Receivable.customer_code == customer)
            .values(due_date=date.today() - timedelta(days=20))
        )
        await s.commit()
    order = await stack.wait_status(
        (await stack.order(customer, [(sku, 1)])).json()["id"], "awaiting_approval"
    )
    assert order["awaiting_role"] == "credit_controller"
    assert order["approvals"][0]["reason"] == "receivable overdue by 20 days (grace 7 days)"
    assert (await stack.get(f"/customers/{customer}")).json()["exposure"] == "60.00"


async def test_deep_discount_and_totals_route_to_manager_and_director(routing_restored: Stack):
    stack = routing_restored
    table = (await stack.get("/routing-rules")).json()
    for rule in table["rules"]:
        if rule["condition"] == "total_above":
            rule["threshold"] = "100.00" if rule["role"] == "sales_manager" else "1000.00"
    r = await stack.http.put(
        "/routing-rules", json={"rules": table["rules"]}, headers=stack.auth("admin")
    )
    assert r.status_code == 200 and r.json()["version"] > table["version"]
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="5.00")

    deep = await stack.post(
        "/orders",
        {"customer_code": customer, "lines": [{"sku": sku, "quantity": 1, "unit_price": "8.50"}]},
        role="sales",
    )  # 15 % > 10 % max
    order = await stack.wait_status(deep.json()["id"], "awaiting_approval")
    assert order["awaiting_role"] == "sales_manager"
    assert "maximum discount" in order["approvals"][0]["reason"]

    big = (await stack.order(customer, [(sku, 200)])).json()["id"]  # 2,000.00
    r = await stack.post(f"/orders/{big}/decision", {"decision": "approve"}, role="sales_manager")
    if r.status_code == 409:  # not yet waiting: wait and retry once
        await stack.wait_status(big, "awaiting_approval")
        r = await stack.post(
            f"/orders/{big}/decision", {"decision": "approve"}, role="sales_manager"
        )
    assert r.status_code == 200, r.text
    assert r.json()["awaiting_role"] == "director"
    r = await stack.post(f"/orders/{big}/decision", {"decision": "approve"}, role="director")
    assert r.status_code == 200
    order = await stack.wait_status(big, "completed")
    assert [a["role"] for a in order["approvals"]] == ["sales_manager", "director"]


async def test_an_edit_to_routing_never_changes_an_order_in_flight(routing_restored: Stack):
    stack = routing_restored
    customer = await stack.customer(limit="1.00")
    sku = await stack.product()
    first = (await stack.order(customer, [(sku, 1)], special_instructions="call first")).json()
    await stack.wait_status(first["id"], "awaiting_approval")
    table = (await stack.get("/routing-rules")).json()
    without_ops = [r for r in table["rules"] if r["condition"] != "special_instructions"]
    r = await stack.http.put(
        "/routing-rules", json={"rules": without_ops}, headers=stack.auth("admin")
    )
    assert r.status_code == 200
    r = await stack.post(
        f"/orders/{first['id']}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.json()["awaiting_role"] == "ops", "the order keeps the table it started with"
    second = (await stack.order(customer, [(sku, 1)], special_instructions="call first")).json()
    await stack.wait_status(second["id"], "awaiting_approval")
    r = await stack.post(
        f"/orders/{second['id']}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.json()["status"] != "awaiting_approval"
    await stack.wait_status(second["id"], "completed")
    assert first["id"] != second["id"]
