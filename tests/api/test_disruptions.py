"""Disruptions on the real stack: the affected orders are found, told and backordered;
lifting wakes them and they complete; an order moves to a substitute in one call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from db.models import CustomerNotice, Order, ProductSubstitute
from tests.api.test_notices import contact, notice_settings, receiving, sending
from tests.utils import Stack, until


async def _substitutes(stack: Stack, sku: str, *subs: str) -> None:
    async with stack.sessions() as s, s.begin():
        for i, sub in enumerate(subs):
            s.add(ProductSubstitute(sku=sku, position=i, substitute_sku=sub))


async def test_disruption_backorders_tells_and_lift_wakes(stack: Stack, tmp_path: Path) -> None:
    sku = await stack.product(stock=0)
    sub = await stack.product(stock=100)
    await _substitutes(stack, sku, sub)
    unrelated = await stack.product(stock=100)
    told = await stack.customer()
    quiet = await stack.customer()
    until_day = datetime.now(UTC).date() + timedelta(days=10)
    with receiving() as rec:
        await contact(stack, told, rec.url, None)
        first = (await stack.order(told, [(sku, 4), (unrelated, 1)])).json()["id"]
        second = (await stack.order(quiet, [(sku, 2)])).json()["id"]
        other = (await stack.order(quiet, [(unrelated, 1)])).json()["id"]
        await stack.wait_status(first, "backordered")
        await stack.wait_status(second, "backordered")
        await stack.wait_status(other, "completed", within=60)
        # Urgent goes first when lifted, however old.
        async with stack.sessions() as s, s.begin():
            await s.execute(update(Order).where(Order.id == second).values(priority="urgent"))

        r = await stack.post(
            "/disruptions",
            {"sku": sku, "until": str(until_day), "reason": "supplier fire"},
            role="ops",
        )
        assert r.status_code == 201, r.text
        d = r.json()
        assert d["affected_orders"] == [first, second]
        assert d["substitutes"] == [sub]
        assert d["status"] == "active"
        # A second one for the same SKU while it is active: 409 naming the first.
        r = await stack.post(
            "/disruptions", {"sku": sku, "until": str(until_day), "reason": "x"}, role="ops"
        )
        assert r.status_code == 409 and f"#{d['id']}" in r.text
        assert (await stack.get(f"/disruptions/{d['id']}")).json()["substitutes"] == [sub]
        assert any(x["id"] == d["id"] for x in (await stack.get("/disruptions")).json())

        timeline = (await stack.get(f"/orders/{first}")).json()["timeline"]
        assert any("supplier fire" in e["detail"] for e in timeline)

        # Stock arrives, but the SKU is disrupted: nothing is reserved, new orders backorder.
        assert (await stack.put(f"/inventory/{sku}", {"on_hand": 50}, "ops")).status_code == 200
        third = (await stack.order(quiet, [(sku, 1)])).json()["id"]
        await stack.wait_status(third, "backordered")
        inv = (await stack.get(f"/inventory/{sku}")).json()
        assert inv["reserved"] == 0
        assert (await stack.get(f"/orders/{first}")).json()["status"] == "backordered"

        settings = notice_settings(stack, tmp_path / "outbox")
        async with sending(settings, stack):

            async def told_once() -> bool:
                return any(b"disrupted" in c["raw"] and c["answered"] == 200 for c in rec.calls)

            await until(told_once, "the disruption notice")
        async with stack.sessions() as s:
            keys = (
                await s.scalars(
                    select(CustomerNotice.event_key).where(CustomerNotice.order_id == first)
                )
            ).all()
        assert f"disrupted:{d['id']}" in keys
        sent = [json.loads(c["raw"]) for c in rec.calls]
        disrupted = [b for b in sent if b["event"] == "disrupted"]
        assert len(disrupted) == 1
        assert disrupted[0]["data"]["expected_date"] == until_day.isoformat()
        assert sub in disrupted[0]["text"]

        r = await stack.post(f"/disruptions/{d['id']}/lift", {}, role="ops")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "lifted"
        assert r.json()["woken_orders"] == [second, first, third]
        for order_id in (first, second, third):
            await stack.wait_status(order_id, "completed", within=60)
        r = await stack.post(f"/disruptions/{d['id']}/lift", {}, role="ops")
        assert r.status_code == 409


async def test_disruption_input_and_roles(stack: Stack) -> None:
    sku = await stack.product(stock=1)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    r = await stack.post(
        "/disruptions", {"sku": sku, "until": str(yesterday), "reason": "x"}, role="ops"
    )
    assert r.status_code == 422 and "until" in r.text
    r = await stack.post(
        "/disruptions", {"sku": sku, "until": "2030-01-01", "reason": ""}, role="ops"
    )
    assert r.status_code == 422 and "reason" in r.text
    r = await stack.post(
        "/disruptions", {"sku": "NOPE-1", "until": "2030-01-01", "reason": "x"}, role="ops"
    )
    assert r.status_code == 404
    r = await stack.post(
        "/disruptions", {"sku": sku, "until": "2030-01-01", "reason": "x"}, role="sales"
    )
    assert r.status_code == 403
    assert (await stack.post("/disruptions/999999999/lift", {}, role="ops")).status_code == 404


async def test_substitute_in_one_call(stack: Stack) -> None:
    sku = await stack.product(price="10.00", stock=100)
    sub = await stack.product(price="12.00", stock=100)
    await _substitutes(stack, sku, sub)
    # No credit limit: the order waits for credit control, so its lines can still change.
    customer = await stack.customer(limit="0.00")
    order_id = (await stack.order(customer, [(sku, 3)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    not_listed = await stack.product(stock=1)
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": not_listed}, role="sales"
    )
    assert r.status_code == 422 and "substitute" in r.text
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": not_listed, "substitute": sub}, role="sales"
    )
    assert r.status_code == 422 and "has no line" in r.text
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": sub}, role="sales"
    )
    assert r.status_code == 200, r.text
    lines = r.json()["lines"]
    assert [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in lines] == [(sub, 3, "12.00")]
