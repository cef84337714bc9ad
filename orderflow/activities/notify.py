"""Outbound messages: on-call alerts and notices to approvers, stored and sent to a webhook.

Delivery never fails an order: a webhook that keeps failing is retried by Temporal and the
alert stays stored (and visible at GET /alerts) whatever happens to the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

import httpx
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from orderflow.activities.base import DbActivities
from orderflow.config import Settings
from orderflow.db.models import Alert as AlertRow
from orderflow.db.session import SessionFactory
from orderflow.domain.payloads import Alert, Notice

log = logging.getLogger("orderflow.notify")


def webhook_body(alert: Alert) -> dict[str, object]:
    """A body both Slack-style (`text`) and Alertmanager-style (`alerts`) receivers take."""
    return {
        "text": f"[{alert.severity}] {alert.summary}",
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
            }
        ],
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
            resp = await self.http.post(
                url, json=webhook_body(alert), headers={"Idempotency-Key": alert.dedup_key}
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
        """A reminder or request to the people holding a role: webhook, e-mail, or the log."""
        url = self.settings.notify_webhook_url
        recipients = self.settings.role_emails.get(notice.role, [])
        if self.settings.smtp_host and recipients:
            await asyncio.to_thread(self._send_mail, notice, recipients)
        if url:
            resp = await self.http.post(
                url,
                json={
                    "text": notice.subject,
                    "role": notice.role,
                    "order_id": notice.order_id,
                    "body": notice.body,
                    "dedup_key": notice.dedup_key,
                },
                headers={"Idempotency-Key": notice.dedup_key},
            )
            resp.raise_for_status()
        elif not (self.settings.smtp_host and recipients):
            log.info("notice to %s: %s", notice.role, notice.subject)

    def _send_mail(self, notice: Notice, recipients: list[str]) -> None:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = notice.subject
        # Mail clients and relays use Message-ID to drop a repeat of a retried send.
        msg["Message-ID"] = f"<{notice.dedup_key.replace(':', '.')}@orderflow>"
        msg.set_content(notice.body or notice.subject)
        assert self.settings.smtp_host is not None
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=20) as smtp:
            smtp.send_message(msg)
