"""Outbound messages: on-call alerts and notices to approvers, stored and sent to a webhook.

Delivery never fails an order: a webhook that keeps failing is retried by Temporal and the
alert stays stored (and visible at GET /alerts) whatever happens to the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import asdict, dataclass
from decimal import Decimal
from email.message import EmailMessage

import httpx
from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db.models import Alert as AlertRow
from db.models import Approval, Customer, Order, OrderLine
from db.session import SessionFactory
from domain.alerts import Alert, Notice
from services.config import Settings

log = logging.getLogger("orderflow.notify")

TOP_LINES = 3  # a notice shows the largest lines; the order page shows them all


@dataclass(frozen=True)
class SummaryLine:
    sku: str
    quantity: int
    line_total: str


@dataclass(frozen=True)
class OrderSummary:
    """What an approver reads in a notice before opening the order: read from PostgreSQL
    when the notice is sent, so the workflow's payload (and its history) stays as it was."""

    customer_code: str
    customer_name: str
    total: str
    currency: str
    status: str
    reason: str
    lines: list[SummaryLine]
    line_count: int

    def as_text(self) -> str:
        out = [
            f"Customer: {self.customer_name} ({self.customer_code})",
            f"Total: {self.total} {self.currency}",
        ]
        if self.reason:
            out.append(f"Why: {self.reason}")
        out.append(f"Lines ({self.line_count}):" if self.lines else "No lines.")
        out += [f"  {ln.sku} x {ln.quantity} = {ln.line_total}" for ln in self.lines]
        if self.line_count > len(self.lines):
            out.append(f"  ... and {self.line_count - len(self.lines)} more")
        return "\n".join(out)


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


async def order_summary(s: AsyncSession, order_id: str, role: str | None) -> OrderSummary | None:
    """The order's customer, total, routing reason (the level `role` was asked for, else
    the pending one) and its largest lines; None when there is no such order."""
    row = (
        await s.execute(
            select(Order, Customer.name)
            .join(Customer, Customer.code == Order.customer_code)
            .where(Order.id == order_id)
        )
    ).first()
    if row is None:
        return None
    order, customer_name = row
    reason = await s.scalar(
        select(Approval.reason)
        .where(Approval.order_id == order_id)
        .order_by(
            case((Approval.role == role, 0), else_=1),
            case((Approval.status == "pending", 0), else_=1),
            Approval.requested_at.desc(),
            Approval.id.desc(),
        )
        .limit(1)
    )
    lines = (
        await s.execute(
            select(OrderLine.sku, OrderLine.quantity, OrderLine.line_total)
            .where(OrderLine.order_id == order_id)
            .order_by(OrderLine.line_total.desc(), OrderLine.line_no)
            .limit(TOP_LINES)
        )
    ).all()
    count = await s.scalar(
        select(func.count()).select_from(OrderLine).where(OrderLine.order_id == order_id)
    )
    return OrderSummary(
        customer_code=order.customer_code,
        customer_name=customer_name,
        total=_money(order.total),
        currency=order.currency,
        status=order.status,
        reason=reason or "",
        lines=[SummaryLine(sku, qty, _money(total)) for sku, qty, total in lines],
        line_count=count or 0,
    )


def webhook_body(alert: Alert, link: str | None = None) -> dict[str, object]:
    """A body both Slack-style (`text`) and Alertmanager-style (`alerts`) receivers take;
    an alert about an order links to its console page (`url`, and `generatorURL`)."""
    body: dict[str, object] = {
        "text": f"[{alert.severity}] {alert.summary}" + (f"\n{link}" if link else ""),
        "dedup_key": alert.dedup_key,
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": alert.kind,
                    "severity": alert.severity,
                    "order_id": alert.order_id or "",
                },
                "annotations": {"summary": alert.summary, "description": alert.detail},
                "fingerprint": alert.dedup_key,
                **({"generatorURL": link} if link else {}),
            }
        ],
    }
    if link:
        body["url"] = link
    return body


def notice_text(notice: Notice, summary: OrderSummary | None, link: str) -> str:
    """The notice as a person reads it (e-mail body, the webhook's `body`)."""
    parts = [notice.body] if notice.body else []
    if summary is not None:
        parts.append(summary.as_text())
    parts.append(f"Open the order: {link}")
    return "\n\n".join(parts)


def notice_body(notice: Notice, summary: OrderSummary | None, link: str) -> dict[str, object]:
    """The notice webhook's body: the fields it always had (`text`, `role`, `order_id`,
    `body`, `dedup_key`) and, added, `url` and the order's `summary`."""
    return {
        "text": f"{notice.subject}\n{link}",
        "role": notice.role,
        "order_id": notice.order_id,
        "body": notice_text(notice, summary, link),
        "dedup_key": notice.dedup_key,
        "url": link,
        "summary": asdict(summary) if summary is not None else None,
    }


class NotifyActivities(DbActivities):
    def __init__(self, sessions: SessionFactory, settings: Settings, http: httpx.AsyncClient):
        super().__init__(sessions, settings)
        self.http = http

    @activity.defn(name="notify.store_alert")
    async def store_alert(self, alert: Alert) -> bool:
        """Store the alert once per dedup key; True when it is new."""
        async with self.tx() as s:
            row = await s.execute(
                insert(AlertRow)
                .values(
                    dedup_key=alert.dedup_key,
                    kind=alert.kind,
                    severity=alert.severity,
                    order_id=alert.order_id,
                    summary=alert.summary,
                    detail=alert.detail,
                )
                .on_conflict_do_nothing(constraint="uq_alerts_dedup")
                .returning(AlertRow.id)
            )
            return row.first() is not None

    @activity.defn(name="notify.deliver_alert")
    async def deliver_alert(self, alert: Alert) -> None:
        """POST the alert to the webhook; the dedup key lets the receiver drop a repeat."""
        url = self.settings.alert_webhook_url
        if url:
            link = self.settings.console_order_url(alert.order_id) if alert.order_id else None
            resp = await self.http.post(
                url, json=webhook_body(alert, link), headers={"Idempotency-Key": alert.dedup_key}
            )
            resp.raise_for_status()
        else:
            log.warning("alert %s: %s", alert.dedup_key, alert.summary)
        async with self.tx() as s:
            await s.execute(
                update(AlertRow)
                .where(AlertRow.dedup_key == alert.dedup_key)
                .values(delivered_at=func.now())
            )

    @activity.defn(name="notify.notify_role")
    async def notify_role(self, notice: Notice) -> None:
        """A reminder or request to the people holding a role: webhook, e-mail, or the log.
        Each carries the order's summary, read now, and the link to its console page."""
        url = self.settings.notify_webhook_url
        recipients = self.settings.role_emails.get(notice.role, [])
        mail = bool(self.settings.smtp_host and recipients)
        if not (url or mail):
            log.info("notice to %s: %s", notice.role, notice.subject)
            return
        async with self.sessions() as s:
            summary = await order_summary(s, notice.order_id, notice.role)
        link = self.settings.console_order_url(notice.order_id)
        if mail:
            text = notice_text(notice, summary, link)
            await asyncio.to_thread(self._send_mail, notice, recipients, text)
        if url:
            resp = await self.http.post(
                url,
                json=notice_body(notice, summary, link),
                headers={"Idempotency-Key": notice.dedup_key},
            )
            resp.raise_for_status()

    def _send_mail(self, notice: Notice, recipients: list[str], text: str) -> None:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = notice.subject
        # Mail clients and relays use Message-ID to drop a repeat of a retried send.
        msg["Message-ID"] = f"<{notice.dedup_key.replace(':', '.')}@orderflow>"
        msg.set_content(text)
        assert self.settings.smtp_host is not None
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=20) as smtp:
            smtp.send_message(msg)
