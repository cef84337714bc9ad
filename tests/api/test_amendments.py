"""Amendments through PATCH /orders/{id}: re-validated, re-priced, re-routed; lines only
before reservation; approvals cover only the total they were given for."""

from __future__ import annotations

from db.models import OrderEvent
from tests.utils import Stack, assert_books_balance


def _amended(order: dict) -> list[str]:
    return [e["detail"] for e in order["timeline"] if e["kind"] == "amendment"]


async def _decide(stack: Stack, order_id: str, role: str) -> dict:
    r = await stack.post(f"/orders/{order_id}/decision", {"decision": "approve"}, role=role)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_larger_amendment_needs_the_approval_again_a_smaller_one_does_not(stack: Stack):
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    r = await stack.order(customer, [(sku, 20)], special_instructions="call before delivery")
    order_id = r.json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    state = await _decide(stack, order_id, "credit_controller")  # approves 200.00
    assert state["awaiting_role"] == "ops"

    # 300.00 is more than the credit controller approved: asked again, ops level superseded.
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 30}], "comment": "customer wants more"},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["total"] == "300.00" and order["lines"][0]["quantity"] == 30
    assert order["status"] == "awaiting_approval" and order["awaiting_role"] == "credit_controller"
    assert [(a["level"], a["role"], a["status"]) for a in order["approvals"]] == [
        (1, "credit_controller", "approved"),
        (2, "ops", "superseded"),
        (3, "credit_controller", "pending"),
    ]
    (note,) = _amended(order)
    assert note.startswith("amended by sales-") and f"{sku} 20 -> 30" in note
    assert "total 200.00 -> 300.00" in note and "customer wants more" in note

    state = await _decide(stack, order_id, "credit_controller")  # approves 300.00
    assert state["awaiting_role"] == "ops"
    # Down to 250.00: the credit controller's 300.00 covers it; only ops is asked.
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 25}]},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    order = r.json()
    assert [(a["level"], a["role"], a["status"]) for a in order["approvals"]][3:] == [
        (4, "ops", "superseded"),
        (5, "ops", "pending"),
    ]
    await _decide(stack, order_id, "ops")
    order = await stack.wait_status(order_id, "completed")
    assert order["total"] == "250.00" and order["invoice"]["amount"] == "250.00"
    assert order["lines"][0]["shipped_qty"] == 25
    assert len(_amended(order)) == 2
    await assert_books_balance(stack, sku)


async def test_an_amendment_that_removes_the_reason_for_approval_releases_the_order(stack: Stack):
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    other = await stack.product(price="2.00", floor="1.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 20)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")

    # Invalid: every problem named by field, and nothing changes.
    bad = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 0}, {"sku": "NOPE", "quantity": 1}]},
        headers=stack.auth("sales"),
    )
    assert bad.status_code == 422, bad.text
    assert {(tuple(p["loc"]), p["code"]) for p in bad.json()["detail"]} == {
        (("lines", 0, "quantity"), "quantity_not_positive"),
        (("lines", 1, "sku"), "unknown_sku"),
    }
    empty = await stack.http.patch(f"/orders/{order_id}", json={}, headers=stack.auth("sales"))
    assert empty.status_code == 422
    wrong_role = await stack.http.patch(
        f"/orders/{order_id}",
        json={"requested_delivery_date": "2099-01-01"},
        headers=stack.auth("credit_controller"),
    )
    assert wrong_role.status_code == 403
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert order["total"] == "200.00" and _amended(order) == []

    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 5}, {"sku": other, "quantity": 10}]},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    order = await stack.wait_status(order_id, "completed")
    assert order["total"] == "70.00"
    assert [(ln["sku"], ln["quantity"], ln["shipped_qty"]) for ln in order["lines"]] == [
        (sku, 5, 5),
        (other, 10, 10),
    ]
    assert [(a["role"], a["status"]) for a in order["approvals"]] == [
        ("credit_controller", "superseded")
    ]
    (note,) = _amended(order)
    assert f"added {other} x10" in note and f"{sku} 20 -> 5" in note
    await assert_books_balance(stack, sku, other)


async def test_after_reservation_only_ship_to_and_date_change_and_after_shipment_nothing(
    stack: Stack,
):
    customer = await stack.customer()
    sku = await stack.product(price="10.00", stock=2)
    order_id = (await stack.order(customer, [(sku, 5)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 2}]},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 409 and "only ship_to and requested_delivery_date" in r.text
    past = await stack.http.patch(
        f"/orders/{order_id}",
        json={"requested_delivery_date": "2001-01-01"},
        headers=stack.auth("sales"),
    )
    assert past.status_code == 422
    assert past.json()["detail"][0]["loc"] == ["requested_delivery_date"]
    address = {"line1": "9 Dock Rd", "city": "Ningbo", "postal_code": "315000", "country": "CN"}
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"ship_to": address, "requested_delivery_date": "2099-03-01"},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["ship_to"] == address and order["requested_delivery_date"] == "2099-03-01"
    assert order["status"] == "backordered" and order["lines"][0]["quantity"] == 5
    assert "ship-to 9 Dock Rd, 315000 Ningbo, CN" in _amended(order)[0]

    await stack.put(f"/inventory/{sku}", {"on_hand": 10})
    await stack.wait_status(order_id, "completed")
    late = await stack.http.patch(
        f"/orders/{order_id}", json={"ship_to": address}, headers=stack.auth("sales")
    )
    assert late.status_code == 409
    assert (
        await stack.count(
            OrderEvent, OrderEvent.order_id == order_id, OrderEvent.kind == "amendment"
        )
        == 1
    )
    await assert_books_balance(stack, sku)
