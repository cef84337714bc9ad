"""Disruptions on the real stack: the affected orders are found, told and backordered;
lifting wakes them and they complete; an order moves to a substitute in one call."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from db.models import CustomerNotice, Order, ProductSubstitute
from tests.api.test_notices import contact, notice_settings, receiving, sending
from tests.utils import Stack, assert_books_balance, until


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


async def test_backordered_order_takes_a_substitute_in_one_call(stack: Stack) -> None:
    """A backordered order on a disrupted SKU: a substitute costing more than was approved
    is refused (nothing changes); one within it replaces the line in one call, what the old
    SKU held reserved is given back, and the order reserves again, ships and completes."""
    sku = await stack.product(price="12.00", floor="5.00", stock=2)
    cheaper = await stack.product(price="10.00", floor="5.00", stock=100)
    pricey = await stack.product(price="15.00", floor="5.00", stock=100)
    other = await stack.product(price="4.00", floor="1.00", stock=100)
    down = await stack.product(price="9.00", floor="5.00", stock=100)
    await _substitutes(stack, sku, pricey, down, cheaper)
    await _substitutes(stack, cheaper, sku)
    customer = await stack.customer()
    order_id = (await stack.order(customer, [(other, 1), (sku, 3)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    assert (await stack.get(f"/inventory/{sku}")).json()["reserved"] == 2
    until_day = datetime.now(UTC).date() + timedelta(days=5)
    r = await stack.post(
        "/disruptions", {"sku": sku, "until": str(until_day), "reason": "recall"}, role="ops"
    )
    assert r.status_code == 201 and r.json()["affected_orders"] == [order_id], r.text

    # 3 x 15.00 instead of 3 x 12.00: the total would pass the 40.00 approved.
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": pricey}, role="sales"
    )
    assert r.status_code == 409, r.text
    assert "49.00" in r.json()["detail"] and "40.00" in r.json()["detail"], r.text
    after = (await stack.get(f"/orders/{order_id}")).json()
    assert after["status"] == "backordered"
    assert [(ln["sku"], ln["reserved_qty"]) for ln in after["lines"]] == [(other, 1), (sku, 2)]
    assert (await stack.get(f"/inventory/{sku}")).json()["reserved"] == 2

    # Not listed as a substitute: 422 naming the field.
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": other}, role="sales"
    )
    assert r.status_code == 422 and "substitute" in r.text, r.text
    # Listed, but disrupted too: 422 naming it (checked in the workflow's step).
    r = await stack.post(
        "/disruptions", {"sku": down, "until": str(until_day), "reason": "same supplier"}, "ops"
    )
    assert r.status_code == 201, r.text
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": down}, role="sales"
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "substitute" and "unavailable" in r.text
    # Listed, but already on the order: one line per SKU, so a 422 naming it.
    async with stack.sessions() as s:
        s.add(ProductSubstitute(sku=sku, position=9, substitute_sku=other))
        await s.commit()
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": other}, role="sales"
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][-1] == "substitute" and "already on" in r.text

    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": sku, "substitute": cheaper}, role="sales"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    # The Update answers once the order has reserved again, with the substitute.
    assert body["status"] != "backordered", body["status"]
    lines = [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in body["lines"]]
    assert lines == [(other, 1, "4.00"), (cheaper, 3, "10.00")]
    assert body["total"] == "34.00"
    assert any(
        f"line 2: {sku} x3 replaced by {cheaper} x3, 36.00 -> 30.00" in e["detail"]
        and "total 40.00 -> 34.00" in e["detail"]
        for e in body["timeline"]
    ), body["timeline"]
    # The two units the old line held are free again (the disruption still holds them back).
    inv = (await stack.get(f"/inventory/{sku}")).json()
    assert inv["reserved"] == 0 and inv["on_hand"] == 2
    # Reserved (or further on): its lines no longer change.
    r = await stack.post(
        f"/orders/{order_id}/substitute", {"sku": cheaper, "substitute": sku}, role="sales"
    )
    assert r.status_code == 409, r.text

    done = await stack.wait_status(order_id, "completed", within=60)
    assert [(ln["sku"], ln["shipped_qty"]) for ln in done["lines"]] == [(other, 1), (cheaper, 3)]
    assert done["invoice"]["amount"] == "34.00"
    assert (await stack.get(f"/inventory/{cheaper}")).json()["on_hand"] == 97
    await assert_books_balance(stack, sku, cheaper, pricey, other)
    await _keep_history(stack, "substitution-v2", order_id)


async def _keep_history(stack: Stack, name: str, order_id: str) -> None:
    """ORDERFLOW_RECORD_HISTORIES=1: keep this run's history for
    tests/workflows/test_replay_substitution.py (an existing file is kept: it is older
    code's history that must keep replaying)."""
    path = Path(__file__).parent.parent / "histories" / f"{name}.json"
    if os.environ.get("ORDERFLOW_RECORD_HISTORIES") != "1" or path.exists():
        return
    history = await stack.client.get_workflow_handle(f"order-{order_id}").fetch_history()
    path.write_text(history.to_json())
