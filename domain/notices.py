"""Customer notices and disruptions: which status tells the customer what, once; the
templates' format; the request models of the contact, disruption and substitute calls."""

from __future__ import annotations

import string
from datetime import date
from typing import Annotated

from pydantic import StringConstraints

from domain.base import Model
from domain.status import FINAL_STATUSES, OrderStatus
from domain.types import Code40, SaneDate, line

# The events a customer hears about. "confirmed" is the first reservation of the whole
# order (stock is held for it: a promise we can keep), not the approval, which can still be
# followed by a wait for stock.
CONFIRMED = "confirmed"
WAITING = "waiting"
SHIPPED = "shipped"
DELAYED = "delayed"
DELIVERED = "delivered"
DISRUPTED = "disrupted"
# A return's steps the customer hears of, once per return ("return_approved:RMA-0000007").
RETURN_APPROVED = "return_approved"
RETURN_REFUSED = "return_refused"
RETURN_CREDITED = "return_credited"
RETURN_EVENTS = (RETURN_APPROVED, RETURN_REFUSED, RETURN_CREDITED)
EVENTS = (CONFIRMED, WAITING, SHIPPED, DELAYED, DELIVERED, DISRUPTED, *RETURN_EVENTS)

STATUS_EVENTS: dict[OrderStatus, str] = {
    OrderStatus.RESERVED: CONFIRMED,
    OrderStatus.BACKORDERED: WAITING,
    OrderStatus.SHIPPED: SHIPPED,
    OrderStatus.DELIVERED: DELIVERED,
}
RECEIVERS = ("email", "webhook", "channel")
# An order is "delayed" while it is still on its way to the customer past its requested date.
NOT_YET_DELIVERED = frozenset(OrderStatus) - FINAL_STATUSES - {OrderStatus.DELIVERED}


def notice_for(status: OrderStatus, step_key: str) -> tuple[str, str] | None:
    """(event, event key) a status move tells the customer, or None. The key makes it once:
    once per order, except "shipped", once per shipment ("shipped:2")."""
    event = STATUS_EVENTS.get(status)
    if event is None:
        return None
    if event == SHIPPED:
        return event, step_key if step_key.startswith("shipped:") else f"shipped:{step_key}"
    return event, event


def return_event_key(event: str, rma_id: str) -> str:
    """The key of a return's notice: once per return and event."""
    return f"{event}:{rma_id}"


def shipment_no(event_key: str) -> int | None:
    """The shipment a "shipped:N" key is about."""
    head, _, tail = event_key.partition(":")
    return int(tail) if head == SHIPPED and tail.isdigit() else None


def backoff_seconds(attempts: int, base: float, cap: float = 3600.0) -> float:
    """Wait before the next try after `attempts` failed ones: base, 2x, 4x ... up to cap."""
    return float(min(base * 2 ** max(attempts - 1, 0), cap))


class TemplateError(ValueError):
    """A template file without its "Subject:" first line."""


def render(template: str, values: dict[str, str]) -> tuple[str, str]:
    """(subject, body) of a template: its first line is `Subject: ...`, then a blank line
    and the body; `$name` placeholders (string.Template) are filled, unknown ones kept."""
    head, _, body = template.partition("\n")
    if not head.lower().startswith("subject:"):
        raise TemplateError("a notice template starts with a 'Subject: ...' line")
    subject = string.Template(head.split(":", 1)[1].strip()).safe_substitute(values)
    return subject, string.Template(body.lstrip("\n")).safe_substitute(values).rstrip() + "\n"


Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        max_length=254,
        pattern=r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$",
    ),
]
WebhookUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500, pattern=r"^https?://[^\s]+$")
]


class ContactIn(Model):
    """Where a customer hears about its orders; null clears a receiver."""

    email: Email | None = None
    webhook_url: WebhookUrl | None = None
    # A new signing secret for the webhook (the old one stops working at once).
    rotate_secret: bool = False


class ContactOut(Model):
    customer_code: str
    email: str | None
    webhook_url: str | None
    # Shown once, when the webhook's secret is made (first webhook, or rotate_secret).
    secret: str | None = None


class ChannelNoticesIn(Model):
    webhook_url: WebhookUrl | None = None


class DisruptionIn(Model):
    sku: Code40
    until: SaneDate
    reason: line(500)  # type: ignore[valid-type]


def until_problem(until: date, today: date) -> str | None:
    """A disruption ends in the future (today counts: it ends tonight)."""
    if until < today:
        return f"until must be today ({today.isoformat()}) or later, not {until.isoformat()}"
    return None


class SubstituteIn(Model):
    sku: Code40
    substitute: Code40
