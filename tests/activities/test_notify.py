"""Outbound notices: e-mail over a real SMTP conversation, the alert body shape, and
notices that carry the order's summary and its console link to a real local receiver."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from temporalio.client import Client

from activities.notify import NotifyActivities, webhook_body
from db.session import SessionFactory
from domain.alerts import Alert, Notice
from services.config import Settings
from tests.conftest import running_api
from tests.conftest import test_settings as settings_for
from tests.utils import until
from workers.main import order_worker

PUBLIC = "https://orders.example.com/"


class Receiver:
    """A webhook receiver like `orderflow receiver`, on a free port, keeping every body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                receiver.keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def with_key(self, suffix: str) -> dict | None:
        return next((b for b in self.bodies if b["dedup_key"].endswith(suffix)), None)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


class SmtpSink:
    """Just enough of an SMTP server (RFC 5321) to accept and keep messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rcpt: list[str] = []

        async def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        await say("220 sink ready")
        while line := await reader.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                await say("250 sink")
            elif verb == "RCPT":
                rcpt.append(cmd.split(":", 1)[1].strip(" <>"))
                await say("250 ok")
            elif verb == "DATA":
                await say("354 go on")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((rcpt, data))
                await say("250 queued")
            elif verb == "QUIT":
                await say("221 bye")
                break
            else:
                await say("250 ok")
        writer.close()


async def test_notice_is_mailed_to_the_role(sessions: SessionFactory, pg):
    sink = SmtpSink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(
        database_url=pg.url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        role_emails={"director": ["boss@example.com"]},
    )
    async with server, httpx.AsyncClient() as http:
        acts = NotifyActivities(sessions, settings, http)
        await acts.notify_role(
            Notice(
                dedup_key="SO-1:request:2:director",
                role="director",
                order_id="SO-1",
                subject="order SO-1 needs you",
            )
        )
    ((rcpt, raw),) = sink.messages
    assert rcpt == ["boss@example.com"]
    msg = message_from_bytes(raw)
    assert msg["Subject"] == "order SO-1 needs you"
    assert msg["Message-ID"] == "<SO-1.request.2.director@orderflow>"


def test_alert_body_suits_slack_and_alertmanager_receivers():
    body = webhook_body(
        Alert(
            dedup_key="k1",
            kind="approval_timeout",
            severity="critical",
            order_id="SO-9",
            summary="timed out",
        )
    )
    assert body["text"] == "[critical] timed out"
    (alert,) = body["alerts"]
    assert alert["labels"] == {
        "alertname": "approval_timeout",
        "severity": "critical",
        "order_id": "SO-9",
    }
    assert alert["fingerprint"] == "k1"


def test_alert_about_an_order_links_to_its_page():
    alert = Alert(
        dedup_key="SO-9:escalated:1",
        kind="approval_escalated",
        order_id="SO-9",
        summary="escalated",
    )
    link = "https://orders.example.com/ui/orders/SO-9"
    body = webhook_body(alert, link)
    assert body["text"] == f"[warning] escalated\n{link}" and body["url"] == link
    assert body["alerts"][0]["generatorURL"] == link
    assert "url" not in webhook_body(alert.model_copy(update={"order_id": None}))


async def test_notices_carry_the_order_summary_and_link_request_reminder_escalation(
    pg, sessions: SessionFactory, client: Client, receiver: Receiver
):
    """A real order over its limit, on SLA timers of seconds: the request to the credit
    controller, its reminder, the escalation alert and the request to the director each
    reach the webhook (and the request the mailbox) with the customer, total, reason, top
    3 lines and the link to /ui/orders/{id}; the old fields are all still there."""
    sink = SmtpSink()
    smtp = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    settings = settings_for(
        pg,
        notify_webhook_url=receiver.url,
        alert_webhook_url=receiver.url,
        public_url=PUBLIC,
        smtp_host="127.0.0.1",
        smtp_port=smtp.sockets[0].getsockname()[1],
        role_emails={"credit_controller": ["cc@example.com"]},
        approval_reminder_seconds=1.0,
        approval_escalation_seconds=2.5,
        approval_timeout_seconds=600.0,
    )
    async with smtp, running_api(settings, sessions, client) as stack:
        customer = await stack.customer(limit="100.00")
        skus = [
            await stack.product(price=p, floor="0.50") for p in ("10.00", "3.00", "50.00", "1.00")
        ]
        lines = list(zip(skus, (5, 2, 4, 7), strict=True))  # totals 50, 6, 200, 7
        async with order_worker(stack.client, stack.sessions, settings):
            order_id = (await stack.order(customer, lines)).json()["id"]

            async def all_sent() -> bool:
                return all(
                    receiver.with_key(k)
                    for k in (
                        "request:1:credit_controller",
                        "remind:1:credit_controller",
                        "escalated:1",
                        "request:1:director",
                    )
                )

            await until(all_sent, "request, reminder, escalation and its request", within=30)
            await stack.post(f"/orders/{order_id}/cancel", {"reason": "test over"}, role="ops")
    link = f"https://orders.example.com/ui/orders/{order_id}"
    request = receiver.with_key("request:1:credit_controller")
    assert request is not None
    assert {"text", "role", "order_id", "body", "dedup_key"} <= request.keys()
    assert request["text"].startswith(f"order {order_id} needs your approval (level 1)")
    assert request["url"] == link and request["text"].endswith(link)
    summary = request["summary"]
    assert summary["customer_code"] == customer
    assert summary["customer_name"] == f"Test {customer}"
    assert (summary["total"], summary["currency"]) == ("263.00", "CNY")
    assert summary["reason"].startswith("exposure 263.00 over limit 100.00")
    assert [(ln["sku"], ln["quantity"], ln["line_total"]) for ln in summary["lines"]] == [
        (skus[2], 4, "200.00"),
        (skus[0], 5, "50.00"),
        (skus[3], 7, "7.00"),
    ]
    assert summary["line_count"] == 4
    assert "and 1 more" in request["body"] and link in request["body"]

    reminder = receiver.with_key("remind:1:credit_controller")
    assert reminder is not None and reminder["url"] == link
    assert reminder["summary"]["reason"] == summary["reason"]
    escalated = receiver.with_key("request:1:director")
    assert escalated is not None and escalated["role"] == "director"
    assert escalated["text"].startswith(f"order {order_id} needs your approval (level 1): esc")
    assert escalated["summary"]["reason"] == summary["reason"] and escalated["url"] == link
    alert = receiver.with_key("escalated:1")
    assert alert is not None and alert["url"] == link
    assert alert["alerts"][0]["generatorURL"] == link

    mails = [message_from_bytes(raw) for rcpt, raw in sink.messages]
    request_mail = next(m for m in mails if "needs your approval" in m["Subject"])
    text = request_mail.get_payload(decode=True).decode()
    assert f"Test {customer} ({customer})" in text and "Total: 263.00 CNY" in text
    assert f"{skus[2]} x 4 = 200.00" in text and f"Open the order: {link}" in text
