"""The /ui console over HTTP (no browser): sign-in, session cookie, CSRF, and each page's
role rules, on the real API, PostgreSQL and Temporal."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from openpyxl import load_workbook
from sqlalchemy import update

from api.auth import create_user
from api.ui.session import COOKIE
from db.models import Alert, Order
from tests.utils import Stack

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Console:
    """A browser-like client: its own cookie jar, signed in as one role."""

    def __init__(self, http: httpx.AsyncClient):
        self.http = http
        self.csrf = ""

    async def page(self, path: str, **kw: object) -> httpx.Response:
        r = await self.http.get(path, **kw)
        if m := CSRF.search(r.text):
            self.csrf = m.group(1)
        return r

    async def post(self, path: str, data: dict, csrf: bool = True, **kw: object) -> httpx.Response:
        body = {**data, "csrf": self.csrf} if csrf else data
        return await self.http.post(path, data=body, **kw)

    async def sign_in(self, token: str) -> httpx.Response:
        await self.page("/ui/login")
        return await self.post("/ui/login", {"token": token})


@asynccontextmanager
async def console(stack: Stack, role: str | None = None) -> AsyncIterator[Console]:
    transport = stack.http._transport  # the same in-process app as stack.http
    async with httpx.AsyncClient(transport=transport, base_url="http://orderflow") as http:
        c = Console(http)
        if role is not None:
            r = await c.sign_in(stack.tokens[role])
            assert r.status_code == 303, r.text
        yield c


async def waiting_order(stack: Stack) -> tuple[str, str]:
    """An order over its customer's limit: it waits for a credit controller."""
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 20)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    return order_id, customer


async def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_it(api_stack: Stack):
    async with console(api_stack) as c:
        r = await c.page("/ui/approvals")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
        login = await c.page("/ui/login")
        assert login.status_code == 200 and 'name="token"' in login.text and c.csrf

        wrong = await c.post("/ui/login", {"token": "of_not-a-real-token"})
        assert wrong.status_code == 401 and "not accepted" in wrong.text

        token = api_stack.tokens["credit_controller"]
        r = await c.post("/ui/login", {"token": token, "next": "/ui/approvals"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/approvals"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
        assert token not in cookie and token[3:20] not in cookie, "the token travels encrypted"

        inbox = await c.page("/ui/approvals")
        assert inbox.status_code == 200 and "Waiting for you (credit_controller)" in inbox.text
        assert inbox.headers["content-security-policy"].startswith("default-src 'self'")

        out = await c.post("/ui/logout", {})
        assert out.status_code == 303
        assert (await c.page("/ui/approvals")).status_code == 303


async def test_an_altered_or_foreign_cookie_is_no_session(api_stack: Stack):
    async with console(api_stack, "credit_controller") as c:
        value = c.http.cookies[COOKIE]
        body, tag = value.split(".")
        c.http.cookies.clear()
        c.http.cookies.set(COOKIE, body + "." + tag[:-2] + "AA", path="/ui")
        assert (await c.page("/ui/approvals")).status_code == 303
        c.http.cookies.clear()
        c.http.cookies.set(COOKIE, body[:-2] + "x." + tag, path="/ui")
        assert (await c.page("/ui/approvals")).status_code == 303


async def test_login_redirects_only_inside_the_console(api_stack: Stack):
    async with console(api_stack) as c:
        await c.page("/ui/login")
        token = api_stack.tokens["ops"]
        for evil in ("https://evil.example/", "//evil.example/ui/", "/ui/../admin"):
            r = await c.post("/ui/login", {"token": token, "next": evil})
            assert r.status_code == 303
            assert not r.headers["location"].startswith(("http", "//")), evil
            await c.page("/ui/login")


async def test_every_post_needs_this_sessions_csrf_token(stack: Stack):
    order_id, _ = await waiting_order(stack)
    async with console(stack) as anon:
        await anon.page("/ui/login")
        r = await anon.post("/ui/login", {"token": stack.tokens["ops"]}, csrf=False)
        assert r.status_code == 403 and "security token" in r.text
    cc = "credit_controller"
    async with console(stack, cc) as c, console(stack, cc) as other:
        await c.page(f"/ui/orders/{order_id}")
        await other.page(f"/ui/orders/{order_id}")
        assert c.csrf != other.csrf
        path = f"/ui/orders/{order_id}/decision"
        r = await c.post(path, {"decision": "approve"}, csrf=False)
        assert r.status_code == 403 and "security token" in r.text
        r = await c.http.post(path, data={"decision": "approve", "csrf": other.csrf})
        assert r.status_code == 403 and "security token" in r.text
        # A bearer header does not stand in for the session and its token either.
        r = await c.http.post(
            path, data={"decision": "approve"}, headers=stack.auth("credit_controller")
        )
        assert r.status_code == 403
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert order["status"] == "awaiting_approval", "none of the refused posts decided anything"


async def test_inbox_order_page_and_decision_follow_the_api_rules(stack: Stack):
    order_id, customer = await waiting_order(stack)
    async with console(stack, "credit_controller") as cc, console(stack, "sales_manager") as sm:
        inbox = await cc.page("/ui/approvals")
        assert order_id in inbox.text and customer in inbox.text
        assert "exposure 200.00 over limit 100.00" in inbox.text
        assert "reminder in" in inbox.text
        assert order_id not in (await sm.page("/ui/approvals")).text

        page = await cc.page(f"/ui/orders/{order_id}")
        assert page.status_code == 200
        for fact in ("Credit limit", "Available credit", "-100.00", "Overdue receivables"):
            assert fact in page.text, fact
        assert 'value="approve"' in page.text and "/workflows/order-" in page.text

        seen = await sm.page(f"/ui/orders/{order_id}")
        assert seen.status_code == 200 and 'value="approve"' not in seen.text
        forged = await sm.post(f"/ui/orders/{order_id}/decision", {"decision": "approve"})
        assert forged.status_code == 403
        assert "waits for role credit_controller, you are sales_manager" in forged.text

        r = await cc.post(
            f"/ui/orders/{order_id}/decision", {"decision": "approve", "comment": "known"}
        )
        assert r.status_code == 303, r.text
        done = await cc.page(r.headers["location"])
        assert "Approved." in done.text and "known" in done.text
        again = await cc.post(f"/ui/orders/{order_id}/decision", {"decision": "approve"})
        assert again.status_code == 409 and '<p class="msg error"' in again.text
        bad = await cc.post(f"/ui/orders/{order_id}/decision", {"decision": "maybe"})
        assert bad.status_code == 422 and "decision" in bad.text
    await stack.wait_status(order_id, "completed")


async def test_pages_answer_only_the_roles_of_their_api_routes(api_stack: Stack):
    expected = {
        "/ui/approvals": {"credit_controller": 200, "ops": 200, "sales": 403},
        "/ui/stuck": {"ops": 200, "admin": 200, "sales": 403, "director": 403},
        "/ui/alerts": {"ops": 200, "sales": 200},
        "/ui/imports": {"sales": 200, "admin": 200, "ops": 403},
        "/ui/kpis": {"director": 200, "sales": 200},
    }
    for role in ("credit_controller", "ops", "sales", "admin", "director"):
        async with console(api_stack, role) as c:
            home = await c.page("/ui")
            assert home.status_code == 303
            assert (await c.page(home.headers["location"])).status_code == 200, role
            for path, codes in expected.items():
                if role in codes:
                    r = await c.page(path)
                    assert r.status_code == codes[role], (role, path, r.text[:300])
    async with api_stack.sessions() as s:
        token = await create_user(s, f"ch-{uuid.uuid4().hex[:6]}", "channel", channel="web")
        await s.commit()
    async with console(api_stack) as c:
        await c.sign_in(token)
        assert (await c.page("/ui/kpis")).status_code == 403, "integrations have no console"


async def test_alerts_are_acknowledged_by_ops_only(api_stack: Stack):
    key = f"ui-test-{uuid.uuid4().hex}"
    async with api_stack.sessions() as s:
        alert = Alert(dedup_key=key, kind="stuck_backordered", severity="warning", summary=key)
        s.add(alert)
        await s.commit()
        alert_id = alert.id
    async with console(api_stack, "sales") as sales, console(api_stack, "ops") as ops:
        page = await sales.page("/ui/alerts")
        ack = f'action="/ui/alerts/{alert_id}/ack"'
        assert key in page.text and ack not in page.text
        assert (await sales.post(f"/ui/alerts/{alert_id}/ack", {})).status_code == 403
        assert ack in (await ops.page("/ui/alerts")).text
        r = await ops.post(f"/ui/alerts/{alert_id}/ack", {})
        assert r.status_code == 303
        assert key in (await ops.page("/ui/alerts?status=acknowledged")).text
    async with api_stack.sessions() as s:
        assert (await s.get(Alert, alert_id)).status == "acknowledged"


async def test_stuck_page_says_why_an_order_waits(stack: Stack):
    order_id, _ = await waiting_order(stack)
    async with stack.sessions() as s:
        await s.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(updated_at=datetime.now(UTC) - timedelta(days=2))
        )
        await s.commit()
    async with console(stack, "ops") as ops:
        r = await ops.page("/ui/stuck?status=awaiting_approval&older_than=1d")
        assert r.status_code == 200 and order_id in r.text
        assert "waits for credit_controller (level 1)" in r.text
        assert (await ops.page("/ui/stuck?older_than=forever")).status_code == 422


async def test_imports_upload_and_result_download(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    csv = f"external_ref,customer_code,sku,quantity\nUI-1,{customer},{sku},3\n".encode()
    async with console(stack, "sales") as c:
        await c.page("/ui/imports")
        r = await c.http.post(
            "/ui/imports",
            data={"csrf": c.csrf, "channel": f"ui-{customer[-5:].lower()}"},
            files={"file": ("orders.csv", csv)},
        )
        assert r.status_code == 303, r.text
        page = await c.page(r.headers["location"])
        assert "orders.csv" in page.text
        import_id = re.search(r"/ui/imports/(\d+)/result.xlsx", page.text).group(1)
        result = await c.page(f"/ui/imports/{import_id}/result.xlsx")
        assert result.status_code == 200
        rows = list(load_workbook(io.BytesIO(result.content)).active.iter_rows(values_only=True))
        assert rows[1][rows[0].index("status")] == "created"
        bad = await c.http.post(
            "/ui/imports", data={"csrf": c.csrf}, files={"file": ("x.csv", b"ref,customer\n")}
        )
        assert bad.status_code == 422 and "missing column" in bad.text


async def test_kpi_page_charts_and_export(api_stack: Stack):
    async with console(api_stack, "director") as c:
        r = await c.page("/ui/kpis?from=2020-01-01&to=&channel=")
        assert r.status_code == 200 and "<svg" in r.text and "Export .xlsx" in r.text
        x = await c.page("/ui/kpis.xlsx?from=2020-01-01")
        assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd")
        bad = await c.page("/ui/kpis?from=yesterday")
        assert bad.status_code == 422 and "from" in bad.text
