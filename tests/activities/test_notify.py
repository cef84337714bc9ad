"""Outbound notices: e-mail over a real SMTP conversation, and the alert body shape."""

from __future__ import annotations

import asyncio
from email import message_from_bytes

import httpx

from orderflow.activities.notify import NotifyActivities, webhook_body
from orderflow.config import Settings
from orderflow.db.session import SessionFactory
from orderflow.domain.payloads import Alert, Notice


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
