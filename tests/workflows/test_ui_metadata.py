"""The Temporal UI tells the order's story: static summary and details at start, current
details that say why the order waits, a summary on every activity and timer. Read back
through the client on the real dev server, as the UI reads them."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from httpx import ASGITransport
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from orderflow.api.main import create_app
from orderflow.db.session import SessionFactory
from orderflow.domain import search_attributes
from orderflow.embedded import EmbeddedPostgres, free_port, venv_binary
from orderflow.recovery import Recovery
from orderflow.temporal_client import API_TEMPORAL_RETRY, connect
from orderflow.workflows.alert import AlertWorkflow
from orderflow.workers.main import order_worker
from orderflow.workflows.order import OrderWorkflow
from tests.conftest import running_api, test_settings
from tests.utils import Stack, until

WHEN = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d) UTC")


def _text(payload: Payload) -> str:
    return pydantic_data_converter.payload_converter.from_payload(payload, str)


async def current_details(handle: WorkflowHandle) -> str:
    """What the UI shows as 'Current Details': the SDK's built-in metadata query."""
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return meta.current_details


async def summaries(handle: WorkflowHandle) -> dict[str, list[str]]:
    """The summary of every activity, local activity, timer and child in the history."""
    found: dict[str, list[str]] = {}
    async for event in handle.fetch_history_events():
        if event.user_metadata.HasField("summary"):
            kind = event.WhichOneof("attributes") or ""
            found.setdefault(kind, []).append(_text(event.user_metadata.summary))
    return found


def _utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


async def test_an_order_waiting_for_approval_says_who_for_and_until_when(stack: Stack):
    customer = await stack.customer(limit="1.00")
    sku_a = await stack.product(price="1000.00", floor="900.00")
    sku_b = await stack.product(price="117.25", floor="100.00")
    r = await stack.order(
        customer, [(sku_a, 1), (sku_b, 2)], requested_delivery_date="2031-03-14"
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    started = datetime.now(UTC)
    await stack.wait_status(order_id, "awaiting_approval")
    handle = stack.client.get_workflow_handle(f"order-{order_id}")

    desc = await handle.describe()
    assert await desc.static_summary() == f"{order_id} · {customer} · 1,234.50 CNY · api"
    details = await desc.static_details()
    assert details is not None
    assert "2 lines" in details and "2031-03-14" in details, details

    now = await current_details(handle)
    print(now)
    head, *rest = now.splitlines()
    assert head == "**awaiting approval**: level 1, role **credit_controller**", now
    assert any(line.startswith("- reason: ") and "limit" in line for line in rest), now
    nxt = next(line for line in rest if line.startswith("- next: "))
    assert "approval SLA: remind credit_controller at" in nxt, now
    # The reminder fires 4 h after the level opened (the default SLA), in UTC.
    remind = _utc(WHEN.search(nxt).group(1))  # type: ignore[union-attr]
    assert abs(remind - (started + timedelta(hours=4))) < timedelta(minutes=2), now
    later = [line for line in rest if line.startswith("- then: ")]
    assert [WHEN.sub("", line).strip() for line in later] == [
        "- then: approval SLA: escalate to director at",
        "- then: approval SLA: time out (reject) at",
    ], now
    escalate, timeout = (_utc(WHEN.search(x).group(1)) for x in later)  # type: ignore[union-attr]
    assert escalate - remind == timedelta(hours=20) and timeout - remind == timedelta(hours=68)

    found = await summaries(handle)
    print(found)
    assert "approval SLA: remind credit_controller" in found["timer_started_event_attributes"]
    markers = found["marker_recorded_event_attributes"]
    assert any(s.startswith("check 2 lines") for s in markers), markers
    assert "open approval level 1 for credit_controller" in markers, markers
    assert any(
        s.startswith("notify credit_controller: order")
        for s in found["activity_task_scheduled_event_attributes"]
    ), found

    r = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 200, r.text
    await stack.wait_status(order_id, "completed")

    async def final() -> bool:
        return (await current_details(handle)) == "**completed**"

    await until(final, "current details say completed")
    found = await summaries(handle)
    scheduled = found["activity_task_scheduled_event_attributes"]
    assert "book carrier for shipment 1 (1 package)" in scheduled, scheduled
    tracking = (await stack.get(f"/orders/{order_id}")).json()["shipments"][0]["tracking_number"]
    assert any(
        s.startswith(f"wait for delivery of {tracking}")
        for s in found["timer_started_event_attributes"]
    ), found
    markers = found["marker_recorded_event_attributes"]
    assert "approval level 1 (credit_controller): approved by" in " ".join(markers), markers
    assert any(s.startswith("reserve 2 lines") for s in markers), markers

    # A history with summaries replays against the code (no command changed by them).
    replayer = Replayer(
        workflows=[OrderWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=True)


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
    assert "1 line," in details and "requested delivery: none given" in details, details
    await stack.wait_status(order_id, "completed", within=60)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")
async def test_the_temporal_ui_shows_the_summary_and_why_it_waits(
    pg: EmbeddedPostgres, sessions: SessionFactory
):
    from playwright.async_api import async_playwright

    keep = os.environ.get("ORDERFLOW_UI_SCREENSHOTS")
    async with temporal_with_ui() as (env, ui):
        settings = test_settings(pg)
        async with (
            running_api(settings, sessions, env.client) as stack,
            order_worker(env.client, sessions, settings),
        ):
            tight = await stack.customer(limit="1.00")
            easy = await stack.customer()
            sku = await stack.product(price="49.90", floor="45.00")
            waiting = (await stack.order(tight, [(sku, 3)])).json()["id"]
            done = (await stack.order(easy, [(sku, 2)])).json()["id"]
            await stack.wait_status(waiting, "awaiting_approval")
            await stack.wait_status(done, "completed")
            run_id = (await env.client.get_workflow_handle(f"order-{waiting}").describe()).run_id
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                try:
                    page = await browser.new_page(viewport={"width": 1440, "height": 900})
                    await page.goto(f"{ui}/namespaces/default/workflows")
                    await page.get_by_text(f"order-{waiting}", exact=True).wait_for(timeout=30_000)
                    await page.get_by_role("button", name="Configure Columns").click()
                    for column in ("OrderStatus", "AwaitingRole", "CustomerCode", "OrderTotal", "Channel"):
                        await page.get_by_role("button", name=f"Add {column} column").click()
                    await page.get_by_role("button", name="Close Workflows Table configuration").first.click()
                    await page.get_by_role("columnheader", name="AwaitingRole").wait_for()
                    await page.wait_for_timeout(1000)
                    await page.screenshot(path="/tmp/meta/list.png")
                    await page.goto(
                        f"{ui}/namespaces/default/workflows/order-{waiting}/{run_id}/history"
                    )
                    try:
                        await page.get_by_role("tab", name="User Metadata").click()
                        await page.get_by_text("awaiting approval").first.wait_for(timeout=30_000)
                    finally:
                        await page.screenshot(path="/tmp/meta/page.png", full_page=True)
                        open("/tmp/meta/page.html", "w").write(await page.content())
                finally:
                    await browser.close()
