"""Customer notices: the sender that empties the `customer_notices` outbox.

db/repo.py apply_status queues a notice in the transaction of the status change (and the
disruption and delay checks queue theirs); this loop, run beside every worker, sends what is
due: e-mails (SMTP when ORDERFLOW_SMTP_URL is set, else .eml files in an outbox folder) and
webhooks (JSON signed with HMAC-SHA256 like channel webhooks). A failed send is tried again
with growing waits and never touches the order. Several workers may run it: each claims its
rows with FOR UPDATE SKIP LOCKED and a lease, so a row is sent by one at a time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import smtplib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from sqlalchemy import func, select, text, update

from db.models import (
    Channel,
    CreditNote,
    Customer,
    CustomerNotice,
    Disruption,
    Order,
    OrderLine,
    ProductSubstitute,
    Replenishment,
    Return,
    ReturnLineRow,
    Shipment,
)
from db.notices import queue_delayed
from db.session import SessionFactory
from domain.channels import derive_secret, sign
from domain.notices import (
    DELAYED,
    DISRUPTED,
    RETURN_EVENTS,
    SHIPPED,
    WAITING,
    backoff_seconds,
    render,
    shipment_no,
)
from services.config import Settings

log = logging.getLogger("orderflow.notices")

TEMPLATES = Path(__file__).parent / "notice_templates"
BATCH = 50
LEASE_S = 60  # a claimed row is not claimed again for this long (longer than a send)
SEND_TIMEOUT_S = 10.0


def customer_secret(key: str, code: str, nonce: str) -> str:
    """The signing secret of a customer's notice webhook (derived, never stored)."""
    return derive_secret(key, f"customer:{code}", nonce)


def template_text(settings: Settings, event: str) -> str:
    """The company's template for `event` when its folder has one, else the shipped one."""
    if settings.notice_templates is not None:
        own = settings.notice_templates / f"{event}.txt"
        if own.is_file():
            return own.read_text(encoding="utf-8")
    return (TEMPLATES / f"{event}.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Claimed:
    id: int
    order_id: str
    event: str
    event_key: str
    receiver: str
    address: str
    attempts: int


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    data: dict[str, Any]


async def notice_facts(s: Any, order_id: str, event: str, event_key: str) -> dict[str, str]:
    """What a template can say about the order, read now (the first try) from PostgreSQL."""
    order = await s.get(Order, order_id)
    customer = await s.get(Customer, order.customer_code)
    lines = (
        await s.scalars(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
        )
    ).all()
    facts: dict[str, str] = {
        "order_id": order.id,
        "external_ref": order.external_ref or "",
        "customer_code": order.customer_code,
        "customer_name": customer.name,
        "channel": order.channel,
        "total": f"{order.total:.2f}",
        "currency": order.currency,
        "requested_date": (
            order.requested_delivery_date.isoformat()
            if order.requested_delivery_date
            else "not given"
        ),
        "lines": "\n".join(f"  {ln.sku} x {ln.quantity}" for ln in lines),
    }
    if event == DELAYED:  # where it is now; the other events name their own step
        facts["status_text"] = order.status.replace("_", " ")
    if event == SHIPPED:
        no = shipment_no(event_key) or 1
        ship = await s.scalar(
            select(Shipment).where(Shipment.order_id == order_id, Shipment.shipment_no == no)
        )
        if ship is not None:
            facts |= {
                "carrier": ship.carrier,
                "tracking_number": ship.tracking_number,
                "packages": str(ship.packages),
                "shipment_no": str(no),
            }
    if event == WAITING:
        facts |= await _expected(s, lines)
    if event == DISRUPTED:
        facts |= await _disruption(s, int(event_key.split(":", 1)[1]))
    if event in RETURN_EVENTS:
        facts |= await _return(s, event_key.split(":", 1)[1])
    return facts


async def _return(s: Any, rma_id: str) -> dict[str, str]:
    """A return's facts (docs/returns.md): its lines, the decision, the credit notes."""
    rma = await s.get(Return, rma_id)
    lines = (
        await s.scalars(
            select(ReturnLineRow)
            .where(ReturnLineRow.return_id == rma_id)
            .order_by(ReturnLineRow.sku)
        )
    ).all()
    notes = (
        await s.scalars(
            select(CreditNote).where(CreditNote.return_id == rma_id).order_by(CreditNote.number)
        )
    ).all()
    credited = rma.credited_amount if rma.credited_amount is not None else 0
    return {
        "rma_id": rma.id,
        "return_reason": rma.reason.replace("_", " "),
        "return_lines": "\n".join(f"  {ln.sku} x {ln.quantity}" for ln in lines),
        "return_amount": f"{rma.amount:.2f}",
        "decision_comment": rma.decision_comment or "",
        "credited_amount": f"{credited:.2f}",
        "credit_notes": ", ".join(n.number for n in notes),
    }


async def _expected(s: Any, lines: Any) -> dict[str, str]:
    """The SKUs still short and when they are expected: an active disruption's end, else the
    earliest open replenishment; the order's date is the latest of them."""
    short = sorted({ln.sku for ln in lines if ln.reserved_qty + ln.shipped_qty < ln.quantity})
    dates: dict[str, str] = {}
    for sku in short:
        until = await s.scalar(
            select(Disruption.until).where(Disruption.sku == sku, Disruption.status == "active")
        )
        if until is None:
            until = await s.scalar(
                select(func.min(Replenishment.expected_date)).where(
                    Replenishment.sku == sku, Replenishment.status == "open"
                )
            )
        if until is not None:
            dates[sku] = until.isoformat()
    known = len(dates) == len(short) and short
    return {
        "waiting_for": ", ".join(short) or "stock",
        "expected_date": max(dates.values()) if known else "a date we do not know yet",
    }


async def _disruption(s: Any, disruption_id: int) -> dict[str, str]:
    d = await s.get(Disruption, disruption_id)
    subs = (
        await s.scalars(
            select(ProductSubstitute.substitute_sku)
            .where(ProductSubstitute.sku == d.sku)
            .order_by(ProductSubstitute.position)
        )
    ).all()
    return {
        "sku": d.sku,
        "expected_date": d.until.isoformat(),
        "reason": d.reason,
        "substitutes": (
            "You can switch to one of these instead: " + ", ".join(subs) + "." if subs else ""
        ),
        "substitute_skus": ",".join(subs),
    }


class Mailer:
    """SMTP when `smtp_url` is set; otherwise each e-mail is written as an .eml file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = settings.notice_outbox or settings.home / "outbox"

    def send(self, notice_id: int, to: str, order_id: str, key: str, r: Rendered) -> str:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Subject"] = r.subject
        # A retried send carries the same Message-ID: relays and clients drop the repeat.
        msg["Message-ID"] = f"<notice-{notice_id}@orderflow>"
        msg.set_content(r.body)
        if self.settings.smtp_url:
            url = urlsplit(self.settings.smtp_url)
            with smtplib.SMTP(url.hostname or "localhost", url.port or 25, timeout=20) as smtp:
                if url.username:
                    smtp.login(unquote(url.username), unquote(url.password or ""))
                smtp.send_message(msg)
            return f"smtp {url.hostname}"
        self.outbox.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{order_id}.{key}.{notice_id}") + ".eml"
        path = self.outbox / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(msg))
        tmp.replace(path)  # a reader never sees half a file; a retry rewrites the same one
        return str(path)


class NoticeSender:
    """Sends due notices every `notice_interval_seconds`; `run` loops until cancelled."""

    def __init__(self, sessions: SessionFactory, settings: Settings, http: httpx.AsyncClient):
        self.sessions = sessions
        self.settings = settings
        self.http = http
        self.mailer = Mailer(settings)
        self._delay_checked = 0.0

    async def claim(self) -> list[Claimed]:
        async with self.sessions() as s, s.begin():
            rows = await s.execute(
                text(
                    "UPDATE customer_notices SET attempts = attempts + 1, "
                    "next_attempt_at = now() + make_interval(secs => :lease) "
                    "WHERE id IN (SELECT id FROM customer_notices WHERE status = 'pending' "
                    "AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT :n "
                    "FOR UPDATE SKIP LOCKED) "
                    "RETURNING id, order_id, event, event_key, receiver, address, attempts"
                ),
                {"lease": LEASE_S, "n": BATCH},
            )
            return [Claimed(*r) for r in rows.all()]

    async def rendered(self, c: Claimed) -> Rendered:
        """The notice as first rendered (stored then), so every try sends the same words."""
        async with self.sessions() as s, s.begin():
            row = await s.get(CustomerNotice, c.id)
            assert row is not None
            if row.subject is None or row.body is None or row.data is None:
                facts = await notice_facts(s, c.order_id, c.event, c.event_key)
                row.subject, row.body = render(template_text(self.settings, c.event), facts)
                row.data = facts
            return Rendered(row.subject, row.body, dict(row.data))

    async def _secret(self, c: Claimed) -> str:
        key = self.settings.secret_key
        if not key:
            raise RuntimeError("ORDERFLOW_SECRET_KEY is not set: webhooks cannot be signed")
        async with self.sessions() as s:
            if c.receiver == "channel":
                ch = await s.scalar(
                    select(Channel)
                    .join(Order, Order.channel == Channel.name)
                    .where(Order.id == c.order_id)
                )
                if ch is None:
                    raise RuntimeError("the order's channel is gone")
                return derive_secret(key, ch.name, ch.secret_nonce)
            cust = await s.scalar(
                select(Customer)
                .join(Order, Order.customer_code == Customer.code)
                .where(Order.id == c.order_id)
            )
            if cust is None or not cust.notice_secret_nonce:
                raise RuntimeError("the customer has no webhook secret")
            return customer_secret(key, cust.code, cust.notice_secret_nonce)

    async def deliver(self, c: Claimed) -> None:
        r = await self.rendered(c)
        if c.receiver == "email":
            await asyncio.to_thread(self.mailer.send, c.id, c.address, c.order_id, c.event_key, r)
            return
        payload = {
            "event": c.event,
            "event_key": c.event_key,
            "order_id": c.order_id,
            "subject": r.subject,
            "text": r.body,
            "data": r.data,
        }
        raw = json.dumps(payload, sort_keys=True).encode()
        ts = str(int(time.time()))
        resp = await self.http.post(
            c.address,
            content=raw,
            headers={
                "Content-Type": "application/json",
                "X-Orderflow-Event": c.event,
                "X-Orderflow-Timestamp": ts,
                "X-Orderflow-Signature": sign(await self._secret(c), ts, raw),
                # The receiver drops a repeat of a retried send by this key.
                "Idempotency-Key": f"{c.order_id}:{c.event_key}",
            },
            timeout=SEND_TIMEOUT_S,
        )
        resp.raise_for_status()

    async def _one(self, c: Claimed) -> bool:
        try:
            await self.deliver(c)
        except Exception as err:  # any failure: try again later, the order never waits
            give_up = c.attempts >= self.settings.notice_max_attempts
            wait = backoff_seconds(c.attempts, self.settings.notice_backoff_seconds)
            async with self.sessions() as s, s.begin():
                await s.execute(
                    update(CustomerNotice)
                    .where(CustomerNotice.id == c.id)
                    .values(
                        status="failed" if give_up else "pending",
                        last_error=(str(err) or type(err).__name__)[:1000],
                        next_attempt_at=func.now() + timedelta(seconds=wait),
                    )
                )
            log.warning(
                "notice %s %s to %s failed (try %d%s): %s",
                c.order_id, c.event_key, c.receiver, c.attempts,
                ", giving up" if give_up else f", again in {wait:.0f} s", err,
            )  # fmt: skip
            return False
        async with self.sessions() as s, s.begin():
            await s.execute(
                update(CustomerNotice)
                .where(CustomerNotice.id == c.id)
                .values(status="sent", sent_at=func.now(), last_error=None)
            )
        return True

    async def send_due(self) -> int:
        """One pass: send what is due; answers how many were claimed."""
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self._one(c) for c in claimed))
        return len(claimed)

    async def check_delayed(self) -> list[str]:
        """Queue "delayed" for orders past their requested date (once per order)."""
        async with self.sessions() as s, s.begin():
            return await queue_delayed(s, datetime.now(UTC).date())

    async def run(self) -> None:
        """Send every `notice_interval_seconds` (at once again after a full batch); look
        for late orders every `notice_delay_check_seconds`. An outage only delays it."""
        while True:
            claimed = 0
            try:
                now = time.monotonic()
                if now - self._delay_checked >= self.settings.notice_delay_check_seconds:
                    self._delay_checked = now
                    await self.check_delayed()
                claimed = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # PostgreSQL down: try at the next pass
                log.warning("notice pass failed (retrying): %s", str(err).splitlines()[0])
            await asyncio.sleep(0 if claimed >= BATCH else self.settings.notice_interval_seconds)
