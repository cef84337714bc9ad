"""The Temporal UI tells the order's story: a static summary and details at start, current
details that say why the order waits, a summary on every activity and timer. Read back
through the client on the real dev server, as the UI reads them; then in the Temporal Web UI
itself (headless Chromium). ORDERFLOW_UI_SCREENSHOTS=docs/screenshots keeps its screenshots."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.shipping import SimulatedCarrier
from api.main import create_app
from db.session import SessionFactory
from domain import search_attributes
from orderflow.embedded import EmbeddedPostgres, free_port, venv_binary
from services.recovery import Recovery
from services.temporal import API_TEMPORAL_RETRY, connect
from tests.conftest import running_api
from tests.conftest import test_settings as settings_for
from tests.utils import Stack, until
from workers.main import order_worker
from workflows.alert import AlertWorkflow
from workflows.order import OrderWorkflow

WHEN = re.compile(r" at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _text(payload: Payload) -> str:
    return pydantic_data_converter.payload_converter.from_payload(payload, str)


async def current_details(handle: WorkflowHandle) -> str:
    """What the UI shows as 'Current Details': the SDK's built-in metadata query."""
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return meta.current_details


async def details_until(handle: WorkflowHandle, check, what: str) -> str:  # noqa: ANN001
    """Poll the current details until `check(details)` holds; return them."""
    seen = [""]

    async def holds() -> bool:
        seen[0] = await current_details(handle)
        return bool(check(seen[0]))

    try:
        await until(holds, what)
    except AssertionError as err:
        raise AssertionError(f"{err}; last details:\n{seen[0]}") from None
    return seen[0]


async def summaries(handle: WorkflowHandle) -> dict[str, list[str]]:
    """The summaries in the history, by event: activities, local activities (markers),
    timers, children and the start itself."""
    found: dict[str, list[str]] = {}
    async for event in handle.fetch_history_events():
        if event.user_metadata.HasField("summary"):
            kind = (event.WhichOneof("attributes") or "").removesuffix("_event_attributes")
            found.setdefault(kind, []).append(_text(event.user_metadata.summary))
    return found


def _fires(line: str) -> datetime:
    found = WHEN.search(line)
    assert found, line
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


async def test_an_order_waiting_for_approval_says_who_for_and_until_when(stack: Stack):
    customer = await stack.customer(limit="1.00")
    sku_a = await stack.product(price="1000.00", floor="900.00")
    sku_b = await stack.product(price="117.25", floor="100.00")
    r = await stack.order(customer, [(sku_a, 1), (sku_b, 2)], requested_delivery_date="2031-03-14")
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    started = datetime.now(UTC)
    await stack.wait_status(order_id, "awaiting_approval")
    handle = stack.client.get_workflow_handle(f"order-{order_id}")

    desc = await handle.describe()
    assert await desc.static_summary() == f"{order_id} · {customer} · 1,234.50 CNY · api"
    details = await desc.static_details() or ""
    assert "2 lines, total 1,234.50 CNY" in details, details
    assert "requested delivery: 2031-03-14" in details, details

    now = await details_until(handle, lambda d: "- next: " in d, "the approval timer shown")
    head, *rest = now.splitlines()
    assert head == "**awaiting approval**: level 1, role **credit_controller**", now
    assert "- reason: exposure 1,234.50 over limit 1.00" in rest, now
    (nxt,) = (line for line in rest if line.startswith("- next: "))
    assert nxt.startswith("- next: approval SLA: remind credit_controller at "), now
    # The reminder fires 4 h after the level opened (the default SLA), in UTC; escalation
    # at 24 h, timeout at 72 h.
    remind = _fires(nxt)
    assert abs(remind - (started + timedelta(hours=4))) < timedelta(minutes=2), now
    later = [line for line in rest if line.startswith("- then: ")]
    assert [WHEN.sub("", line) for line in later] == [
        "- then: approval SLA: escalate to director",
        "- then: approval SLA: time out (reject)",
    ], now
    assert [_fires(line) - remind for line in later] == [timedelta(hours=20), timedelta(hours=68)]

    found = await summaries(handle)
    assert found["timer_started"] == ["approval SLA: remind credit_controller"], found
    markers = found["marker_recorded"]
    assert markers[0].startswith("check 2 lines (credit, prices, approvals)"), markers
    assert "open approval level 1 for credit_controller" in markers, markers
    (notice,) = found["activity_task_scheduled"]
    assert notice.startswith(f"notify credit_controller: order {order_id} needs your approval")

    r = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 200, r.text
    order = await stack.wait_status(order_id, "completed")
    await details_until(handle, lambda d: d == "**completed**", "the details say completed")
    found = await summaries(handle)
    assert "book carrier for shipment 1 (1 package)" in found["activity_task_scheduled"], found
    tracking = order["shipments"][0]["tracking_number"]
    assert any(
        s == f"wait for delivery of {tracking}, then ask the carrier"
        for s in found["timer_started"]
    ), found
    markers = found["marker_recorded"]
    assert any(s.startswith("approval level 1 (credit_controller): approved by") for s in markers)
    assert "reserve 2 lines, pick and pack shipment 1" in markers, markers
    assert f"record delivery of {tracking}; complete the order" in markers, markers

    # A history with summaries replays against the code: they change no command.
    replayer = Replayer(
        workflows=[OrderWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=True)


async def test_a_backorder_names_the_skus_short_and_when_it_looks_again(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=1)
    order_id = (await stack.order(customer, [(sku, 3)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    now = await details_until(handle, lambda d: "- next: " in d, "the backorder timer shown")
    assert now.splitlines()[:2] == ["**backordered**", f"- short: {sku} x2"], now
    # Rechecks hourly (the default) until the alert after a day, the cancel after a week.
    assert f"- next: backorder: check stock again ({sku} x2) at " in now, now
    found = await summaries(handle)
    assert found["timer_started"] == [f"backorder: check stock again ({sku} x2)"], found

    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "customer gave up"}, role="sales")
    assert r.status_code in (200, 202), r.text
    await stack.wait_status(order_id, "cancelled")
    final = await details_until(handle, lambda d: d.startswith("**cancelled**"), "cancelled")
    assert final.startswith("**cancelled**: cancelled by ") and "customer gave up" in final
    markers = (await summaries(handle))["marker_recorded"]
    assert "undo: release the reserved stock (cancelled)" in markers, markers


async def test_a_carrier_refusal_shows_the_failing_step_and_its_error(api_stack: Stack):
    stack = api_stack
    carrier = SimulatedCarrier(transit_seconds=0, mode="fail_permanent")
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=carrier):
        customer = await stack.customer()
        sku = await stack.product(stock=5)
        order_id = (await stack.order(customer, [(sku, 2)])).json()["id"]
        handle = stack.client.get_workflow_handle(f"order-{order_id}")
        now = await details_until(
            handle, lambda d: "- next: carrier hold" in d, "the carrier hold shown"
        )
        assert now.splitlines()[:2] == [
            "**packed, carrier booking on hold**",
            "- step shipping.book failed: carrier refused the booking",
        ], now
        (nxt,) = (line for line in now.splitlines() if line.startswith("- next: "))
        assert nxt.startswith(
            "- next: carrier hold: fail the order unless ops retry shipment 1 or cancel at"
        )
        assert _fires(nxt) - datetime.now(UTC) > timedelta(days=29), now
        found = await summaries(handle)
        assert found["activity_task_scheduled"] == ["book carrier for shipment 1 (1 package)"]
        (alert,) = found["start_child_workflow_execution_initiated"]
        assert alert.startswith("critical alert carrier_failed: order "), alert

        r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "no carrier"}, role="sales")
        assert r.status_code in (200, 202), r.text
        await stack.wait_status(order_id, "cancelled")
        found = await summaries(handle)
        assert "undo: cancel the carrier booking (cancelled)" in found["activity_task_scheduled"]


async def test_a_stranded_order_started_by_recovery_has_the_same_summary(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(price="5.00", floor="4.00")
    nobody = await connect(
        f"127.0.0.1:{free_port()}", "default", lazy=True, retry_config=API_TEMPORAL_RETRY
    )
    app = create_app(stack.settings, sessions=stack.sessions, client=nobody)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://orderflow", headers=stack.auth()
        ) as http:
            r = await http.post(
                "/orders",
                json={"customer_code": customer, "lines": [{"sku": sku, "quantity": 3}]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
    assert r.status_code == 503, r.text
    order_id = r.json()["detail"].split()[1]
    settings = stack.settings.model_copy(update={"recovery_grace_seconds": 0.0})
    assert order_id in await Recovery(stack.sessions, stack.client, settings).sweep()
    desc = await stack.client.get_workflow_handle(f"order-{order_id}").describe()
    assert await desc.static_summary() == f"{order_id} · {customer} · 15.00 CNY · api"
    details = await desc.static_details() or ""
    assert "1 line, total 15.00 CNY" in details and "requested delivery: none given" in details
    await stack.wait_status(order_id, "completed", within=60)


# ---- in the Temporal Web UI --------------------------------------------------------------


@asynccontextmanager
async def temporal_with_ui() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server of its own with the Web UI on (the session's one is headless)."""
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        port=free_port(),
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    try:
        yield env, f"http://127.0.0.1:{ui_port}"
    finally:
        await env.shutdown()


# The order search attributes, as columns of the workflow list (it has no summary column).
COLUMNS = ("OrderStatus", "AwaitingRole", "CustomerCode", "OrderTotal")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install -y chromium")
async def test_the_temporal_web_ui_shows_why_the_order_waits(
    pg: EmbeddedPostgres, sessions: SessionFactory
):
    from playwright.async_api import async_playwright

    keep = os.environ.get("ORDERFLOW_UI_SCREENSHOTS")
    async with temporal_with_ui() as (env, ui):
        settings = settings_for(pg)
        async with (
            running_api(settings, sessions, env.client) as stack,
            order_worker(env.client, sessions, settings),
        ):
            tight = await stack.customer(limit="1.00")
            easy = await stack.customer()
            sku = await stack.product(price="49.90", floor="45.00")
            scarce = await stack.product(price="12.00", floor="10.00", stock=2)
            waiting = (await stack.order(tight, [(sku, 3)])).json()["id"]
            done = (await stack.order(easy, [(sku, 2)])).json()["id"]
            short = (await stack.order(easy, [(scarce, 5), (sku, 1)])).json()["id"]
            await stack.wait_status(waiting, "awaiting_approval")
            await stack.wait_status(short, "backordered")
            await stack.wait_status(done, "completed")
            run_id = (await env.client.get_workflow_handle(f"order-{waiting}").describe()).run_id
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page(viewport={"width": 1600, "height": 720})
                    await page.goto(f"{ui}/namespaces/default/workflows")
                    await page.get_by_text(f"order-{waiting}", exact=True).wait_for()
                    await page.get_by_role("button", name="Configure Columns").click()
                    for column in ("Run ID", "Type", "End"):  # room for the order's columns
                        await page.get_by_role("button", name=f"Remove {column} column").click()
                    for column in COLUMNS:
                        await page.get_by_role("button", name=f"Add {column} column").click()
                    await page.get_by_role(
                        "button", name="Close Workflows Table configuration"
                    ).first.click()
                    await page.get_by_text("Configure Workflows Table").wait_for(state="hidden")
                    await page.get_by_role("cell", name="credit_controller").wait_for()
                    if keep:
                        await page.screenshot(path=str(Path(keep) / "temporal-workflows.png"))

                    await page.goto(
                        f"{ui}/namespaces/default/workflows/order-{waiting}/{run_id}/user-metadata"
                    )
                    summary = page.frame_locator("#user-metadata-summary")
                    await summary.get_by_text(f"{waiting} · {tight} · 149.70 CNY · api").wait_for()
                    now = page.frame_locator("#user-metadata-current-details")
                    await now.get_by_text("awaiting approval").wait_for()
                    await now.get_by_text("approval SLA: escalate to director at").wait_for()
                    if keep:
                        await page.screenshot(path=str(Path(keep) / "temporal-workflow.png"))
                finally:
                    await browser.close()
