"""Make-to-order: a production order instead of a reservation, completed by ops."""

from __future__ import annotations

import uuid

from db.models import Stock
from tests.utils import Stack


async def _made_to_order(stack: Stack) -> str:
    sku = f"MTO-{uuid.uuid4().hex[:6].upper()}"
    r = await stack.post(
        "/products",
        {
            "sku": sku,
            "name": "Cabinet to measure",
            "unit_price": "900.00",
            "floor_price": "800.00",
            "make_to_order": True,
        },
    )
    assert r.status_code == 201
    return sku


async def test_make_to_order_line_waits_for_production_then_ships(stack: Stack):
    customer = await stack.customer()
    stocked = await stack.product()
    custom = await _made_to_order(stack)
    order_id = (await stack.order(customer, [(stocked, 2), (custom, 3)])).json()["id"]
    order = await stack.wait_status(order_id, "backordered")
    assert "in production order #" in order["timeline"][-1]["detail"]
    (prod,) = [
        p
        for p in (await stack.get("/production-orders", params={"status": "open"})).json()
        if p["order_id"] == order_id
    ]
    assert (prod["sku"], prod["quantity"], prod["late"]) == (custom, 3, False)

    denied = await stack.post(f"/production-orders/{prod['id']}/complete", {}, role="sales")
    assert denied.status_code == 403
    done = await stack.post(f"/production-orders/{prod['id']}/complete", {}, role="ops")
    assert done.status_code == 200 and done.json()["status"] == "completed"
    again = await stack.post(f"/production-orders/{prod['id']}/complete", {}, role="ops")
    assert again.status_code == 409
    order = await stack.wait_status(order_id, "completed")
    assert all(ln["shipped_qty"] == ln["quantity"] for ln in order["lines"])
    async with stack.sessions() as s:
        made = await s.get(Stock, custom)
        assert made is not None
        assert (made.on_hand, made.reserved, made.shipped, made.received) == (0, 0, 3, 3)


async def test_cancelling_cancels_the_production_order(stack: Stack):
    customer = await stack.customer()
    custom = await _made_to_order(stack)
    order_id = (await stack.order(customer, [(custom, 1)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "changed mind"}, role="sales")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    (prod,) = [
        p for p in (await stack.get("/production-orders")).json() if p["order_id"] == order_id
    ]
    assert prod["status"] == "cancelled"
    late = await stack.post(f"/production-orders/{prod['id']}/complete", {}, role="ops")
    assert late.status_code == 409
