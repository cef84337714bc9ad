"""Books against shelves on the real stack: the ledger balances through an order, a tampered
row is found and alerted once per run, cycle counts adjust with an audit, once, and the
nightly schedule exists once a worker has started."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

from sqlalchemy import select, text
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
)

from db.models import Alert, StockMovement
from domain.reconcile import CheckRequest, Report, reconcile_alert_key
from tests.conftest import test_settings as settings_for
from tests.utils import Stack, until
from workers.main import serve
from workers.schedules import ensure_reconcile_schedule
from workflows.reconcile import ReconcileWorkflow


async def _movements(stack: Stack, sku: str) -> list[StockMovement]:
    async with stack.sessions() as s:
        q = select(StockMovement).where(StockMovement.sku == sku).order_by(StockMovement.id)
        return list((await s.scalars(q)).all())


async def _alerts(stack: Stack, key: str) -> list[Alert]:
    async with stack.sessions() as s:
        return list((await s.scalars(select(Alert).where(Alert.dedup_key == key))).all())


async def _tamper(stack: Stack, sku: str, by: int) -> None:
    """What nobody may do: write stock behind db/stock.py's back."""
    async with stack.sessions() as s:
        await s.execute(
            text("UPDATE stock SET on_hand = on_hand + :by WHERE sku = :sku"),
            {"by": by, "sku": sku},
        )
        await s.commit()


async def test_an_order_end_to_end_leaves_the_books_balanced(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=50)
    other = await stack.product(stock=8)
    r = await stack.post(
        f"/inventory/{other}/replenishments",
        {"quantity": 12, "expected_date": "2030-01-01"},
        role="ops",
    )
    assert r.status_code in (200, 201), r.text
    replenishment = r.json()["id"]
    r = await stack.post(f"/inventory/replenishments/{replenishment}/receive", {}, role="ops")
    assert r.status_code == 200, r.text

    order = (await stack.order(customer, [(sku, 5), (other, 3)])).json()
    await stack.wait_status(order["id"], "completed")

    r = await stack.get(f"/reconcile?sku={sku}&sku={other}", role="ops")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is True, report["problems"]
    assert report["skus_checked"] == 2 and report["problems"] == []
    # The ledger says what happened, each movement under the key of what moved it.
    moved = [(m.kind, m.quantity) for m in await _movements(stack, sku)]
    assert moved == [("receipt", 50), ("shipment", -5)]
    keys = [m.key for m in await _movements(stack, other)]
    assert keys[1] == f"replenishment:{replenishment}"
    assert [(m.kind, m.quantity) for m in await _movements(stack, other)] == [
        ("receipt", 8),
        ("receipt", 12),
        ("shipment", -3),
    ]
    assert (await stack.get(f"/inventory/{other}")).json()["on_hand"] == 17


async def test_a_tampered_row_is_found_and_alerted_once_per_run(stack: Stack):
    sku = await stack.product(stock=20)
    await _tamper(stack, sku, -3)
    try:
        r = await stack.get(f"/reconcile?sku={sku}", role="ops")
        report = r.json()
        assert report["ok"] is False
        by_check = {p["check"]: p for p in report["problems"]}
        assert set(by_check) == {"ledger", "balance"}, report["problems"]
        assert (by_check["ledger"]["expected"], by_check["ledger"]["actual"]) == ("20", "17")
        assert "-3 unit(s) no movement explains" in by_check["ledger"]["detail"]
        assert by_check["balance"]["detail"] == (
            f"{sku}: on hand 17 + shipped 0 = 17, but received 20 + adjustments 0 = 20"
        )
        assert await stack.count(Alert, Alert.summary.contains(sku)) == 0  # looking raises none

        r = await stack.post("/reconcile", {"skus": [sku]}, role="ops")
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["ok"] is False and run["problems_total"] == 2
        key = reconcile_alert_key(run["run_id"])

        async def stored(key: str) -> bool:
            return len(await _alerts(stack, key)) == 1

        await until(lambda: stored(key), "the reconcile alert")
        [alert] = await _alerts(stack, key)
        assert alert.kind == "stock_reconcile" and alert.severity == "critical"
        assert sku in alert.summary and "on hand is 17" in alert.detail

        # The nightly run (a ReconcileWorkflow) finds the same; run twice under one id (a
        # retried run), it still raises one alert.
        run_id = f"reconcile-test-{uuid.uuid4().hex[:8]}"
        for _ in range(2):
            nightly = await stack.client.execute_workflow(
                ReconcileWorkflow.run,
                CheckRequest(skus=[sku]),
                id=run_id,
                task_queue=stack.settings.task_queue,
            )
            assert [p.check for p in nightly.problems] == ["ledger", "balance"]
            await until(lambda: stored(reconcile_alert_key(run_id)), "the nightly alert")
        await asyncio.sleep(0.5)
        assert len(await _alerts(stack, reconcile_alert_key(run_id))) == 1
    finally:
        await _tamper(stack, sku, +3)
    r = await stack.get(f"/reconcile?sku={sku}", role="ops")
    assert r.json()["ok"] is True


async def test_a_cycle_count_adjusts_with_an_audit_once(stack: Stack):
    sku = await stack.product(stock=30, bin_location="A-01-01")
    key = f"count-{uuid.uuid4().hex[:8]}"
    body = {
        "counts": [{"sku": sku, "counted": 27, "bin_location": "B-02-02"}],
        "reason": "quarterly count, aisle A",
    }
    r = await stack.post("/stock-counts", body, role="ops", headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    first = r.json()
    [line] = first["lines"]
    assert (line["on_hand_before"], line["on_hand_after"], line["difference"]) == (30, 27, -3)
    assert line["status"] == "adjusted" and f"{sku} lives at A-01-01" in line["note"]
    assert first["differences"] == 1 and first["counted_by"].startswith("ops-")
    assert (await stack.get(f"/inventory/{sku}")).json()["on_hand"] == 27

    audit = [m for m in await _movements(stack, sku) if m.kind == "count"]
    assert [(m.quantity, m.on_hand_before, m.on_hand_after) for m in audit] == [(-3, 30, 27)]
    assert audit[0].actor == first["counted_by"] and audit[0].reason == body["reason"]
    assert audit[0].bin_location == "B-02-02" and audit[0].key == f"count:{key}:{sku}"

    async def alerted() -> bool:
        return len(await _alerts(stack, f"stock-count:{key}")) == 1

    await until(alerted, "the count's alert")
    # The books still balance: the count is an adjustment, not a loss nobody explains.
    assert (await stack.get(f"/reconcile?sku={sku}", role="ops")).json()["ok"] is True

    # The same count again: the same answer, nothing moves, still one alert.
    await stack.put(f"/inventory/{sku}", {"on_hand": 29}, role="ops")
    r = await stack.post("/stock-counts", body, role="ops", headers={"Idempotency-Key": key})
    assert r.status_code == 200 and r.json() == first
    assert (await stack.get(f"/inventory/{sku}")).json()["on_hand"] == 29
    assert len([m for m in await _movements(stack, sku) if m.kind == "count"]) == 1
    await asyncio.sleep(0.3)
    assert len(await _alerts(stack, f"stock-count:{key}")) == 1
    assert (await stack.get(f"/stock-counts/{key}", role="ops")).json() == first

    # The same id for another count is refused, naming it.
    other = {**body, "reason": "another count"}
    r = await stack.post("/stock-counts", other, role="ops", headers={"Idempotency-Key": key})
    assert r.status_code == 422 and "was used for another count" in r.json()["detail"]


async def test_a_count_sheet_and_a_count_below_the_reservations(stack: Stack):
    customer = await stack.customer()
    a = await stack.product(stock=10)
    b = await stack.product(stock=10)
    order = (await stack.order(customer, [(b, 6)])).json()
    await stack.wait_status(order["id"], "completed")  # b: 4 on hand now
    sheet = f"sku,counted,bin_location\n{a},12,\n{b},4,A-01-01\n".encode()
    r = await stack.http.post(
        "/stock-counts/sheet",
        files={"file": ("count.csv", sheet)},
        data={"reason": "sheet count"},
        headers={**stack.auth("ops"), "Idempotency-Key": f"sheet-{uuid.uuid4().hex[:8]}"},
    )
    assert r.status_code == 201, r.text
    lines = {ln["sku"]: ln for ln in r.json()["lines"]}
    assert (lines[a]["status"], lines[a]["difference"], lines[a]["on_hand_after"]) == (
        "adjusted",
        2,
        12,
    )
    assert (lines[b]["status"], lines[b]["difference"]) == ("ok", 0)
    assert (await stack.get(f"/reconcile?sku={a}&sku={b}", role="ops")).json()["ok"] is True

    # Fewer counted than open orders hold: refused for that SKU, and said why.
    held = await stack.product(stock=3)
    waiting = (await stack.order(customer, [(held, 5)])).json()["id"]
    await stack.wait_status(waiting, "backordered")  # holds the 3 there are
    r = await stack.post(
        "/stock-counts",
        {"counts": [{"sku": held, "counted": 2}], "reason": "two found"},
        role="ops",
    )
    assert r.status_code == 201, r.text
    [line] = r.json()["lines"]
    assert (line["status"], line["on_hand_after"], line["difference"]) == ("refused", 3, -1)
    assert "below the 3 unit(s) reserved" in line["note"]
    assert (await stack.get(f"/inventory/{held}")).json()["on_hand"] == 3
    assert not [m for m in await _movements(stack, held) if m.kind == "count"]
    await stack.post(f"/orders/{waiting}/cancel", {"reason": "test over"}, role="ops")
    await stack.wait_status(waiting, "cancelled")
    assert (await stack.get(f"/reconcile?sku={held}", role="ops")).json()["ok"] is True


async def test_bad_counts_are_refused_naming_the_field(stack: Stack):
    sku = await stack.product(stock=5)
    cases = [
        ({"counts": [{"sku": sku, "counted": -1}], "reason": "x"}, "counted"),
        ({"counts": [], "reason": "x"}, "counts"),
        ({"counts": [{"sku": sku, "counted": 1}], "reason": ""}, "reason"),
        ({"counts": [{"sku": "NO-SUCH-SKU", "counted": 1}], "reason": "x"}, "no product"),
    ]
    for body, named in cases:
        r = await stack.post("/stock-counts", body, role="ops")
        assert r.status_code == 422, (body, r.text)
        assert named in r.text, r.text
    r = await stack.post("/stock-counts", cases[0][0], role="sales")
    assert r.status_code == 403
    assert (await stack.get("/reconcile", role="sales")).status_code == 403
    bad = b"sku,counted\n" + sku.encode() + b",many\n"
    r = await stack.http.post(
        "/stock-counts/sheet",
        files={"file": ("c.csv", bad)},
        data={"reason": "x"},
        headers=stack.auth("ops"),
    )
    assert r.status_code == 422 and "row 2: counted 'many'" in r.json()["detail"], r.text
    r = await stack.http.post(
        "/stock-counts/sheet",
        files={"file": ("c.csv", b"sku,qty\nA,1\n")},
        data={"reason": "x"},
        headers=stack.auth("ops"),
    )
    assert r.status_code == 422 and "missing column(s): counted" in r.json()["detail"]
    assert (await stack.get(f"/inventory/{sku}")).json()["on_hand"] == 5


def _at(desc: ScheduleDescription) -> tuple[list[int], list[int]]:
    """The hours and minutes a schedule fires at (the server keeps a cron as calendars)."""
    [cal] = desc.schedule.spec.calendars
    return [r.start for r in cal.hour], [r.start for r in cal.minute]


async def test_the_nightly_schedule_exists_once_a_worker_has_started(api_stack: Stack, pg):
    settings = settings_for(
        pg,
        reconcile_schedule_id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        reconcile_cron="0 3 * * *",
    )
    await api_stack.product(stock=1)  # something on the books to check
    client = api_stack.client
    stop = asyncio.Event()
    worker = asyncio.create_task(serve(client, api_stack.sessions, settings, stop))
    handle = client.get_schedule_handle(settings.reconcile_schedule_id)
    try:

        async def made() -> bool:
            with contextlib.suppress(Exception):
                await handle.describe()
                return True
            return False

        await until(made, "the reconcile schedule")
        desc = await handle.describe()
        assert _at(desc) == ([3], [0])
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ReconcileWorkflow" and action.task_queue == settings.task_queue

        # Made again with another cron (a restart after a settings change): updated, not doubled.
        changed = settings.model_copy(update={"reconcile_cron": "15 1 * * *"})
        await ensure_reconcile_schedule(client, changed)
        desc = await handle.describe()
        assert _at(desc) == ([1], [15])

        # What it starts runs on the worker: trigger it now and read the run's report.
        await handle.trigger()

        async def ran() -> bool:
            return bool((await handle.describe()).info.recent_actions)

        await until(ran, "the triggered run")
        started = (await handle.describe()).info.recent_actions[0].action
        assert isinstance(started, ScheduleActionExecutionStartWorkflow)
        report = await client.get_workflow_handle(
            started.workflow_id, run_id=started.first_execution_run_id, result_type=Report
        ).result(rpc_timeout=timedelta(seconds=60))
        assert report.skus_checked >= 1
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await handle.delete()
