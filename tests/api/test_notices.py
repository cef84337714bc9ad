"""Customer notices on the real stack: each event once from entry to delivery, signed; a
failing receiver is retried and never holds the order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from db.models import CustomerNotice, Order
from domain.channels import check_signature
from orderflow.embedded import free_port
from services.config import Settings
from services.notices import NoticeSender
from tests.utils import Stack, until


@dataclass
class Receiver:
    """A tiny real HTTP server: records every POST; answers 500 to the first `fail` ones."""

    fail: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ok(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["answered"] == 200]


@contextlib.contextmanager
def receiving(fail: int = 0) -> Iterator[Receiver]:
    rec = Receiver(fail=fail)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            code = 500 if len(rec.calls) < rec.fail else 200
            rec.calls.append({"headers": dict(self.headers), "raw": raw, "answered": code})
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", rec.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def sending(settings: Settings, stack: Stack) -> AsyncIterator[NoticeSender]:
    """The worker's notice loop, as `workers.main.serve` runs it."""
    async with httpx.AsyncClient() as http:
        sender = NoticeSender(stack.sessions, settings, http)
        task = asyncio.create_task(sender.run())
        try:
            yield sender
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def notice_settings(stack: Stack, outbox: Path, **kw: Any) -> Settings:
    return stack.settings.model_copy(
        update={
            "notice_outbox": outbox,
            "notice_interval_seconds": 0.1,
            "notice_backoff_seconds": 0.2,
            # The delay check runs on demand in these tests (sender.check_delayed).
            "notice_delay_check_seconds": 3600.0,
            **kw,
        }
    )


async def notices(stack: Stack, order_id: str) -> list[dict[str, Any]]:
    r = await stack.get(f"/orders/{order_id}/notices")
    assert r.status_code == 200, r.text
    return list(r.json())


async def contact(stack: Stack, code: str, url: str | None, email: str | None) -> str | None:
    r = await stack.put(f"/customers/{code}/contact", {"email": email, "webhook_url": url})
    assert r.status_code == 200, r.text
    return r.json()["secret"]


def check_signed(call: dict[str, Any], secret: str) -> dict[str, Any]:
    h = call["headers"]
    why = check_signature(
        secret, h["X-Orderflow-Timestamp"], h["X-Orderflow-Signature"], call["raw"], time.time()
    )
    assert why is None, why
    return dict(json.loads(call["raw"]))


async def test_each_notice_once_from_entry_to_delivery(stack: Stack, tmp_path: Path) -> None:
    customer = await stack.customer()
    sku = await stack.product(stock=0)
    eta = datetime.now(UTC).date() + timedelta(days=3)
    r = await stack.post(
        f"/inventory/{sku}/replenishments", {"quantity": 50, "expected_date": str(eta)}, "ops"
    )
    assert r.status_code in (200, 201), r.text
    settings = notice_settings(stack, tmp_path / "outbox")
    with receiving() as rec:
        secret = await contact(stack, customer, rec.url, "buyer@example.com")
        assert secret and secret.startswith("whsec_")
        async with sending(settings, stack) as sender:
            r = await stack.order(customer, [(sku, 5)], requested_delivery_date=str(eta))
            assert r.status_code == 201, r.text
            order_id = r.json()["id"]
            await stack.wait_status(order_id, "backordered")
            # Past its requested date while it waits: the delay check finds it, once.
            async with stack.sessions() as s, s.begin():
                await s.execute(
                    update(Order)
                    .where(Order.id == order_id)
                    .values(requested_delivery_date=datetime.now(UTC).date() - timedelta(days=1))
                )
            assert order_id in await sender.check_delayed()
            assert order_id not in await sender.check_delayed()
            assert (await stack.put(f"/inventory/{sku}", {"on_hand": 50}, "ops")).status_code == 200
            await stack.wait_status(order_id, "completed", within=60)
            await until(
                lambda: _all_sent(stack, order_id, 10), "10 notices sent (5 events x 2)", 30
            )
            await asyncio.sleep(0.5)  # nothing more is sent on later passes
        events = [check_signed(c, secret) for c in rec.ok()]
    by_event = sorted(e["event"] for e in events)
    assert by_event == sorted(["waiting", "delayed", "confirmed", "shipped", "delivered"])
    assert all(e["order_id"] == order_id for e in events)
    got = {e["event"]: e for e in events}
    assert got["waiting"]["data"]["expected_date"] == eta.isoformat()
    assert got["shipped"]["data"]["tracking_number"] in got["shipped"]["text"]
    assert got["shipped"]["event_key"] == "shipped:1"
    # The sender sends every pending notice of the shared database: this order's are its.
    mails = sorted((tmp_path / "outbox").glob(f"{order_id}.*.eml"))
    assert len(mails) == 5
    subjects = {str(message_from_bytes(p.read_bytes())["Subject"]) for p in mails}
    assert f"Order {order_id} has shipped" in subjects
    assert all(message_from_bytes(p.read_bytes())["To"] == "buyer@example.com" for p in mails)
    listed = await notices(stack, order_id)
    assert {(n["event_key"], n["receiver"]) for n in listed} == {
        (k, rcv)
        for k in ("waiting", "delayed", "confirmed", "shipped:1", "delivered")
        for rcv in ("email", "webhook")
    }
    assert all(n["status"] == "sent" and n["attempts"] == 1 for n in listed)


async def _all_sent(stack: Stack, order_id: str, n: int) -> bool:
    async with stack.sessions() as s:
        rows = (
            await s.scalars(
                select(CustomerNotice.status).where(CustomerNotice.order_id == order_id)
            )
        ).all()
    return len(rows) == n and all(st == "sent" for st in rows)


async def test_failing_receiver_is_retried_and_never_holds_the_order(
    stack: Stack, tmp_path: Path
) -> None:
    customer = await stack.customer()
    sku = await stack.product(stock=100)
    settings = notice_settings(stack, tmp_path / "outbox")
    with receiving(fail=4) as rec:
        secret = await contact(stack, customer, rec.url, None)
        assert secret is not None
        async with sending(settings, stack):
            r = await stack.order(customer, [(sku, 2)])
            order_id = r.json()["id"]
            # The receiver answers 500 to the first tries: the order goes on regardless.
            await stack.wait_status(order_id, "completed", within=60)
            await until(lambda: _all_sent(stack, order_id, 3), "3 notices sent", 30)
        sent = [check_signed(c, secret)["event"] for c in rec.ok()]
    assert sorted(sent) == ["confirmed", "delivered", "shipped"]
    assert sum(1 for c in rec.calls if c["answered"] == 500) == 4
    listed = await notices(stack, order_id)
    assert sum(n["attempts"] for n in listed) == 3 + 4
    assert all(n["status"] == "sent" and n["last_error"] is None for n in listed)


async def test_no_receiver_queues_nothing(stack: Stack) -> None:
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    r = await stack.order(customer, [(sku, 1)])
    order_id = r.json()["id"]
    await stack.wait_status(order_id, "completed", within=60)
    assert await notices(stack, order_id) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"email": "a@b.c", "colour": "red"}, "colour"),
    ],
)
async def test_bad_contact_is_a_422_naming_the_field(
    api_stack: Stack, body: dict[str, Any], field: str
) -> None:
    customer = await api_stack.customer()
    r = await api_stack.put(f"/customers/{customer}/contact", body)
    assert r.status_code == 422, r.text
    assert field in r.text


async def test_channel_gets_the_same_events_signed_with_its_secret(
    stack: Stack, tmp_path: Path
) -> None:
    from tests.api.test_channels import _channel, _deliver

    customer = await stack.customer()
    sku = await stack.product(stock=10)
    name = f"shop-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "generic")
    settings = notice_settings(stack, tmp_path / "outbox")
    with receiving() as rec:
        r = await stack.put(f"/channels/{name}/notices", {"webhook_url": rec.url})
        assert r.status_code == 200, r.text
        async with sending(settings, stack):
            payload = {
                "external_id": "N-1",
                "customer_code": customer,
                "lines": [{"sku": sku, "quantity": 1}],
            }
            ok = await _deliver(stack, name, secret, payload)
            assert ok.status_code == 201, ok.text
            order_id = ok.json()["id"]
            await stack.wait_status(order_id, "completed", within=60)
            await until(lambda: _all_sent(stack, order_id, 3), "3 notices sent", 30)
        bodies = [check_signed(c, secret) for c in rec.ok()]
    assert sorted(b["event"] for b in bodies) == ["confirmed", "delivered", "shipped"]
    assert {n["receiver"] for n in await notices(stack, order_id)} == {"channel"}


async def test_a_receiver_that_never_answers_is_given_up_on(stack: Stack, tmp_path: Path) -> None:
    customer = await stack.customer()
    sku = await stack.product(stock=10)
    settings = notice_settings(stack, tmp_path / "outbox", notice_max_attempts=2)
    with receiving(fail=1000) as rec:
        await contact(stack, customer, rec.url, None)
        async with sending(settings, stack):
            order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
            await stack.wait_status(order_id, "completed", within=60)

            async def all_failed() -> bool:
                listed = await notices(stack, order_id)
                return len(listed) == 3 and all(n["status"] == "failed" for n in listed)

            await until(all_failed, "3 notices given up", 30)
    listed = await notices(stack, order_id)
    assert all(n["attempts"] == 2 and "500" in n["last_error"] for n in listed)
    assert len(rec.calls) == 6
