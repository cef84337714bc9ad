"""The /ui console in a real browser: headless Chromium from the OS packages, driven by
Playwright, against the API served by uvicorn on a free port over the test PostgreSQL and
Temporal. Set ORDERFLOW_UI_SCREENSHOTS=docs/screenshots to keep each page's screenshots."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import update

from api.main import create_app
from db.models import Alert, Order, OrderEvent, PickBatch, PickList, Shipment
from orderflow.embedded import free_port
from services.config import Settings
from tests.api.test_production import _made_to_order
from tests.api.test_ui_ops import _order_at
from tests.utils import Stack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH: install the OS package (apt-get install -y chromium; "
    ".ci/run does it)",
)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@asynccontextmanager
async def served(stack: Stack) -> AsyncIterator[str]:
    """The whole app (a fresh create_app, as `orderflow api` runs it) under uvicorn in a
    thread with its own event loop, engine and Temporal client; the test's worker runs the
    orders."""
    target = stack.client.service_client.config.target_host
    settings: Settings = stack.settings.model_copy(update={"temporal_address": target})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # The system browser, never a downloaded one; no sandbox as root in a container.
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(browser, base: str, token: str, viewport=DESKTOP):  # noqa: ANN001, ANN201
    """A new browser context signed in with the keyboard only."""
    ctx = await browser.new_context(viewport=viewport, base_url=base)
    page = await ctx.new_page()
    await page.goto("/ui/approvals")
    assert "/ui/login" in page.url  # not signed in: sent to the form, and back after
    await page.wait_for_function("document.activeElement.id === 'token'")  # autofocus
    await page.keyboard.type(token)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert "/ui/login" not in page.url, await page.locator("main").inner_text()
    return ctx, page


async def waiting_order(stack: Stack) -> str:
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 20)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    return order_id


async def badge_text(page, within: float, *wanted: str) -> str:  # noqa: ANN001
    """Reload the order page until its status badge reads one of `wanted`."""
    deadline = time.monotonic() + within
    while True:
        text = (await page.locator("h1 .badge").inner_text()).strip()
        if text in wanted or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.2)
        await page.reload()


async def test_an_approver_signs_in_finds_the_order_and_approves_it(stack: Stack):
    order_id = await waiting_order(stack)
    async with served(stack) as base, chromium() as browser:
        ctx, page = await sign_in(browser, base, stack.tokens["credit_controller"])
        assert page.url.endswith("/ui/approvals")
        row = page.locator("tr", has_text=order_id)
        assert "exposure 200.00 over limit 100.00" in await row.inner_text()
        await row.get_by_role("link", name=order_id).click()
        await page.wait_for_url(f"**/ui/orders/{order_id}")
        assert await page.get_by_text("Available credit").count() == 1
        # Keyboard: the comment, then Tab to Approve, Enter.
        await page.get_by_label("Comment").fill("known customer, paid on time")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.value") == "approve"
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"**/ui/orders/{order_id}?done=approve")
        assert await page.get_by_role("status").inner_text() == "Approved. The order moves on."
        assert await page.locator("form[action$='/decision']").count() == 0
        status = await badge_text(page, 30, "completed")
        assert status == "completed", status
        assert "known customer" in await page.locator("#route-h + table").inner_text()
        await ctx.close()
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert order["approvals"][0]["decided_by"].startswith("credit_controller-")


async def test_a_wrong_role_sees_no_form_and_a_forged_post_is_refused(stack: Stack):
    order_id = await waiting_order(stack)
    async with served(stack) as base, chromium() as browser:
        ctx, page = await sign_in(browser, base, stack.tokens["sales_manager"])
        await page.goto(f"/ui/orders/{order_id}")
        assert await page.locator("form[action$='/decision']").count() == 0
        assert "only that role can decide" in await page.locator("main").inner_text()
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        path = f"/ui/orders/{order_id}/decision"
        forged = await page.request.post(path, form={"decision": "approve", "csrf": csrf})
        assert forged.status == 403
        assert "waits for role credit_controller, you are sales_manager" in await forged.text()
        no_token = await page.request.post(path, form={"decision": "approve"})
        assert no_token.status == 403 and "security token" in await no_token.text()
        await ctx.close()
        # The right role, but a post without the session's CSRF token: refused too.
        ctx, page = await sign_in(browser, base, stack.tokens["credit_controller"])
        r = await page.request.post(path, form={"decision": "approve"})
        assert r.status == 403 and "security token" in await r.text()
        await ctx.close()
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert order["status"] == "awaiting_approval"


async def test_every_page_fits_a_phone_and_a_desktop(stack: Stack):
    """Each page, at 390 and 1280 px: no sideways scrolling on the phone, and screenshots."""
    order_id = await waiting_order(stack)
    await waiting_order(stack)
    customer = await stack.customer()
    sku = await stack.product(price="12.50", floor="10.00")
    first_pass = (await stack.order(customer, [(sku, 4)])).json()["id"]
    csv = f"external_ref,customer_code,sku,quantity\nPO-{sku},{customer},{sku},2\n".encode()
    imported = await stack.http.post(
        "/imports", files={"file": ("orders.csv", csv)}, headers=stack.auth("sales")
    )
    assert imported.status_code in (201, 202), imported.text
    await stack.wait_status(first_pass, "completed")
    made = await _made_to_order(stack)
    backordered = (await stack.order(customer, [(made, 2), (sku, 4)])).json()["id"]
    await stack.wait_status(backordered, "backordered")
    held = (await stack.order(customer, [(sku, 8)])).json()["id"]
    await stack.wait_status(held, "completed")
    for weeks_ago in range(8, 0, -1):  # history for the KPI page's weekly trends
        at = datetime.now(UTC) - timedelta(weeks=weeks_ago)
        for k in range(3 + weeks_ago % 3):
            routed = k % (2 + weeks_ago % 2) == 0
            await _order_at(
                stack,
                "shop",
                customer,
                sku,
                at=at + timedelta(hours=k),
                qty=10,
                shipped=10 if k or weeks_ago % 2 else 7,
                statuses=["received", "validated"]
                + (["awaiting_approval"] if routed else [])
                + ["approved", "shipped", "delivered"],
                due=(at + timedelta(days=0 if k == 1 else 3)).date(),
            )
    async with stack.sessions() as s:
        # A carrier exception on an open order, for the exceptions page (rows only).
        await s.execute(update(Order).where(Order.id == held).values(status="invoiced"))
        tracking = await s.scalar(
            update(Shipment)
            .where(Shipment.order_id == held)
            .values(status="exception")
            .returning(Shipment.tracking_number)
        )
        s.add(OrderEvent(order_id=held, step_key=f"carrier:{tracking}:exception", kind="carrier"))
        await s.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(updated_at=datetime.now(UTC) - timedelta(hours=3))
        )
        s.add(
            Alert(
                dedup_key=f"ui-shot-{uuid.uuid4().hex}",
                kind="approval_escalated",
                severity="warning",
                order_id=order_id,
                summary=f"order {order_id} level 1 not decided by credit_controller within "
                "1 day, 0:00:00; escalated to director",
            )
        )
        # The floor's page (rows only): a finished order's list made an open, urgent floor
        # list, and the order shown as picked and waiting for its packages.
        line = {"sku": sku, "bin_location": "B-12-04", "sequence": 1, "quantity": 4}
        batch = PickBatch(
            kind="single",
            status="open",
            lines=[{**line, "order_id": first_pass}],
            distance_m=Decimal("42.5"),
            by_code_m=Decimal("61.0"),
        )
        s.add(batch)
        await s.flush()
        await s.execute(
            update(PickList)
            .where(PickList.order_id == first_pass)
            .values(batch_id=batch.id, status="picked", picked_at=datetime.now(UTC))
        )
        await s.execute(
            update(Order).where(Order.id == first_pass).values(status="packed", priority="urgent")
        )
        await s.commit()
    keep = os.environ.get("ORDERFLOW_UI_SCREENSHOTS")
    pages = {
        "approvals": ("credit_controller", "/ui/approvals"),
        "order": ("credit_controller", f"/ui/orders/{order_id}"),
        "stuck": ("ops", "/ui/stuck?older_than=2h"),
        "alerts": ("ops", "/ui/alerts"),
        "production": ("ops", "/ui/production"),
        "exceptions": ("ops", "/ui/exceptions"),
        "pick-lists": ("warehouse", "/ui/pick-lists"),
        "disruptions": ("ops", "/ui/disruptions"),
        "amend": ("sales", f"/ui/orders/{order_id}"),
        "imports": ("sales", "/ui/imports"),
        "kpis": ("director", "/ui/kpis"),
        "login": (None, "/ui/login"),
    }
    async with served(stack) as base, chromium() as browser:
        for size_name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
            for name, (role, path) in pages.items():
                if role is None:
                    ctx = await browser.new_context(viewport=viewport, base_url=base)
                    page = await ctx.new_page()
                else:
                    ctx, page = await sign_in(browser, base, stack.tokens[role], viewport)
                response = await page.goto(path)
                assert response is not None and response.status == 200, (name, response)
                overflow = await page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {size_name}"
                if keep:
                    await asyncio.to_thread(Path(keep).mkdir, parents=True, exist_ok=True)
                    await page.screenshot(
                        path=str(Path(keep) / f"{name}-{size_name}.png"),
                        full_page=size_name == "desktop" or name != "order",
                    )
                await ctx.close()
