"""Alerts for on-call and notices for approvers."""

from __future__ import annotations

from typing import Literal

from domain.base import Model


class Alert(Model):
    dedup_key: str
    kind: str
    severity: Literal["info", "warning", "critical"] = "warning"
    order_id: str | None = None
    summary: str
    detail: str = ""


class Notice(Model):
    """A message to a role (approvers) through the outbound path."""

    dedup_key: str
    role: str
    order_id: str
    subject: str
    body: str = ""
