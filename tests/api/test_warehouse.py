"""The warehouse floor in manual mode (docs/warehouse.md): orders wait for people to confirm
their pick lists and give their packages; urgent lists first; small orders share a wave; a
short pick ships or waits by the order's rules with the books balancing; a late pick raises
one alert."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import func, select, update
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.models import Alert, Order, Package, PickList
from db.session import SessionFactory
from domain.status import FINAL_STATUSES
from orderflow.embedded import EmbeddedPostgres
from tests import conftest
from tests.conftest import running_api
from tests.utils import Stack, assert_books_balance, until
from workers.main import order_worker

HISTORIES = Path(__file__).parent.parent / "histories"
BOX = {"weight_kg": "2.50", "length_cm": "40", "width_cm": "30", "height_cm": "20"}


@asynccontextmanager
async def floor_stack(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client, **settings: Any
) -> AsyncIterator[Stack]:
    """API + worker in manual warehouse mode; the orders it leaves open are ended after."""
    cfg = conftest.test_settings(pg, warehouse_mode="manual", **settings)
    async with sessions() as s:
        started = await s.scalar(select(func.now()))
    try:
        async with running_api(cfg, sessions, client) as stack:
            async with order_worker(client, sessions, cfg):
                yield stack
    finally:
        async with sessions() as s:
            open_ids = (
                await s.scalars(
                    select(Order.id).where(
                        Order.created_at >= started,
                        Order.status.not_in([st.value for st in FINAL_STATUSES]),
                    )
                )
            ).all()
        for order_id in open_ids:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(f"order-{order_id}").terminate()


async def _list_of(stack: Stack, order_id: str, status: str = "open") -> dict[str, Any]:
    """The floor's pick list holding `order_id` (waits for it to appear)."""
    found: dict[str, Any] = {}

    async def appears() -> bool:
        r = await stack.get(f"/pick-lists?status={status}", role="warehouse")
        assert r.status_code == 200, r.text
        for p in r.json():
            if order_id == p["order_id"] or order_id in (p["orders"] or []):
                found.update(p)
                return True
        return False

    await until(appears, f"a pick list for {order_id}")
    return found


async def _record(stack: Stack, name: str, order_id: str) -> None:
    """ORDERFLOW_RECORD_HISTORIES=1: keep this run's history for tests/workflows/test_replay.py
    (an existing file is kept: it is older code's history that must keep replaying)."""
    path = HISTORIES / f"{name}.json"
    if os.environ.get("ORDERFLOW_RECORD_HISTORIES") != "1" or path.exists():
        return
    history = await stack.client.get_workflow_handle(f"order-{order_id}").fetch_history()
    path.write_text(history.to_json())


def _all_picked(p: dict[str, Any], **short: int) -> dict[str, Any]:
    lines = []
    for ln in p["lines"]:
        line = {"sku": ln["sku"], "picked": short.get(ln["sku"], ln["quantity"])}
        if p["kind"] == "wave":
            line["order_id"] = ln["order_id"]
        lines.append(line)
    return {"lines": lines}


async def test_manual_order_waits_for_the_floor_then_ships(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    async with floor_stack(pg, sessions, client, wave_max_orders=1) as stack:
        customer = await stack.customer()
        a = await stack.product(stock=20, bin_location="C-02-01")
        b = await stack.product(stock=20, bin_location="A-01-03")
        order_id = (await stack.order(customer, [(a, 2), (b, 3)])).json()["id"]
        await stack.wait_status(order_id, "picking")
        p = await _list_of(stack, order_id)
        assert p["kind"] == "single" and p["order_id"] == order_id and p["status"] == "open"
        assert [ln["sequence"] for ln in p["lines"]] == [1, 2]
        assert [ln["sku"] for ln in p["lines"]] == [b, a]  # aisle A before aisle C
        assert float(p["distance_m"]) > 0
        sheet = await stack.get(f"/pick-lists/{p['id']}.xlsx", role="warehouse")
        assert sheet.status_code == 200
        rows = list(load_workbook(io.BytesIO(sheet.content)).active.iter_rows(values_only=True))
        assert [r[2] for r in rows[4:]] == [b, a]
        # Nobody has confirmed: the order stays in picking, and packages are refused.
        await asyncio.sleep(1.0)
        assert (await stack.get(f"/orders/{order_id}")).json()["status"] == "picking"
        r = await stack.post(f"/orders/{order_id}/packages", {"packages": [BOX]}, "warehouse")
        assert r.status_code == 409, r.text
        # Validation names the line and the rule.
        bad = {"lines": [{"sku": a, "picked": 3}, {"sku": b, "picked": 3}]}
        r = await stack.post(f"/pick-lists/{p['id']}/confirm", bad, role="warehouse")
        assert r.status_code == 422 and "between 0 and 2" in r.text, r.text
        r = await stack.post(
            f"/pick-lists/{p['id']}/confirm", {"lines": [{"sku": a, "picked": 2}]}, role="warehouse"
        )
        assert r.status_code == 422 and "missing" in r.text, r.text
        r = await stack.post(f"/pick-lists/{p['id']}/confirm", _all_picked(p), role="sales")
        assert r.status_code == 403
        r = await stack.post(f"/pick-lists/{p['id']}/confirm", _all_picked(p), role="warehouse")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "confirmed"
        await stack.wait_status(order_id, "packed")
        await asyncio.sleep(1.0)
        assert (await stack.get(f"/orders/{order_id}")).json()["status"] == "packed"
        r = await stack.post(
            f"/orders/{order_id}/packages", {"packages": [{**BOX, "weight_kg": "0"}]}, "warehouse"
        )
        assert r.status_code == 422 and "weight_kg" in r.text
        r = await stack.post(f"/orders/{order_id}/packages", {"packages": [BOX, BOX]}, "warehouse")
        assert r.status_code == 200, r.text
        order = await stack.wait_status(order_id, "completed")
        assert [s["status"] for s in order["shipments"]] == ["delivered"]
        assert await stack.count(Package, Package.order_id == order_id) == 2
        assert [(pl["batch_id"], pl["status"]) for pl in order["pick_lists"]] == [
            (p["id"], "packed")
        ]
        assert [pk["weight_kg"] for pk in order["packages"]] == ["2.50", "2.50"]
        await assert_books_balance(stack, a, b)
        await _record(stack, "manual-warehouse", order_id)


async def test_urgent_pick_list_is_first_in_the_open_list(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    async with floor_stack(pg, sessions, client, wave_max_orders=1) as stack:
        customer = await stack.customer()
        sku = await stack.product(stock=50)
        first = (await stack.order(customer, [(sku, 1)])).json()["id"]
        second = (await stack.order(customer, [(sku, 1)])).json()["id"]
        p1, p2 = await _list_of(stack, first), await _list_of(stack, second)
        ids = [p["id"] for p in (await stack.get("/pick-lists", role="warehouse")).json()]
        assert ids.index(p1["id"]) < ids.index(p2["id"])  # oldest first among equals
        async with sessions() as s:  # ops (or a rule) made the later order urgent
            await s.execute(update(Order).where(Order.id == second).values(priority="urgent"))
            await s.commit()
        queue = (await stack.get("/pick-lists?status=open", role="ops")).json()
        assert queue[0]["id"] == p2["id"] and queue[0]["priority"] == "urgent"


async def test_small_orders_share_a_wave_and_each_gets_its_part(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    async with floor_stack(
        pg, sessions, client, wave_max_orders=2, wave_release_seconds=3600
    ) as stack:
        customer = await stack.customer()
        x = await stack.product(stock=50, bin_location="B-04-01")
        y = await stack.product(stock=50, bin_location="A-02-01")
        one = (await stack.order(customer, [(x, 1), (y, 1)])).json()["id"]
        await stack.wait_status(one, "picking")
        two = (await stack.order(customer, [(x, 2)])).json()["id"]
        wave = await _list_of(stack, two)
        assert wave["kind"] == "wave" and sorted(wave["orders"]) == sorted([one, two])
        assert [ln["sequence"] for ln in wave["lines"]] == [1, 2, 3]
        assert {(ln["order_id"], ln["sku"]) for ln in wave["lines"]} == {
            (one, x),
            (one, y),
            (two, x),
        }
        # x is on the wave for both orders: a line without its order is ambiguous.
        r = await stack.post(
            f"/pick-lists/{wave['id']}/confirm",
            {"lines": [{"sku": x, "picked": 1}, {"sku": y, "picked": 1}]},
            role="warehouse",
        )
        assert r.status_code == 422 and "order_id" in r.text, r.text
        r = await stack.post(f"/pick-lists/{wave['id']}/confirm", _all_picked(wave), "warehouse")
        assert r.status_code == 200, r.text
        for order_id in (one, two):
            await stack.wait_status(order_id, "packed")
            r = await stack.post(f"/orders/{order_id}/packages", {"packages": [BOX]}, "warehouse")
            assert r.status_code == 200, r.text
        for order_id in (one, two):
            await stack.wait_status(order_id, "completed")
        await assert_books_balance(stack, x, y)


async def test_short_pick_ships_what_was_picked_and_the_rest_follows(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    async with floor_stack(pg, sessions, client, wave_max_orders=1) as stack:
        customer = await stack.customer()
        sku = await stack.product(stock=10)
        r = await stack.order(customer, [(sku, 10)], allow_partial_shipment=True)
        order_id = r.json()["id"]
        p = await _list_of(stack, order_id)
        r = await stack.post(
            f"/pick-lists/{p['id']}/confirm", _all_picked(p, **{sku: 6}), "warehouse"
        )
        assert r.status_code == 200, r.text
        await stack.wait_status(order_id, "packed")
        # The 4 not found were given back: only the 6 picked stay reserved.
        stock = (await stack.get(f"/inventory/{sku}")).json()
        assert (stock["on_hand"], stock["reserved"]) == (10, 6)
        await assert_books_balance(stack, sku)
        r = await stack.post(f"/orders/{order_id}/packages", {"packages": [BOX]}, "warehouse")
        assert r.status_code == 200, r.text

        # The remainder is the order's second shipment: reserved again, a second list.
        async def second_list() -> bool:
            return (
                await stack.count(PickList, PickList.order_id == order_id, PickList.wave == 2) == 1
            )

        await until(second_list, "the second shipment's pick list")
        p2 = await _list_of(stack, order_id)
        assert [ln["quantity"] for ln in p2["lines"]] == [4]
        r = await stack.post(f"/pick-lists/{p2['id']}/confirm", _all_picked(p2), "warehouse")
        assert r.status_code == 200, r.text
        await stack.wait_status(order_id, "packed")
        r = await stack.post(f"/orders/{order_id}/packages", {"packages": [BOX]}, "warehouse")
        assert r.status_code == 200, r.text
        order = await stack.wait_status(order_id, "completed")
        assert [ln["shipped_qty"] for ln in order["lines"]] == [10]
        assert len(order["shipments"]) == 2
        await assert_books_balance(stack, sku)
        await _record(stack, "manual-short-pick", order_id)
        kpis = (await stack.get(f"/kpis?customer_code={customer}")).json()
        assert kpis["pick_accuracy"] == 0.7143  # 10 of the 14 units on its two lists
        assert kpis["time_to_pick_seconds"]["count"] == 2
        assert kpis["time_to_pack_seconds"]["count"] == 2


async def test_a_late_pick_raises_one_alert_and_keeps_waiting(
    pg: EmbeddedPostgres, sessions: SessionFactory, time_env: WorkflowEnvironment
):
    async with floor_stack(
        pg,
        sessions,
        time_env.client,
        wave_max_orders=1,
        pick_sla_seconds=1800,
        delivery_poll_seconds=600.0,
    ) as stack:
        customer = await stack.customer()
        sku = await stack.product()
        order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
        p = await _list_of(stack, order_id)
        await time_env.sleep(timedelta(minutes=45))
        kinds = [
            a["kind"] for a in (await stack.get("/alerts")).json() if a["order_id"] == order_id
        ]
        assert kinds == ["pick_late"]
        await time_env.sleep(timedelta(days=2))
        assert await stack.count(Alert, Alert.order_id == order_id) == 1
        assert (await stack.get(f"/orders/{order_id}")).json()["status"] == "picking"
        r = await stack.post(f"/pick-lists/{p['id']}/confirm", _all_picked(p), "warehouse")
        assert r.status_code == 200, r.text
        await stack.wait_status(order_id, "packed")
