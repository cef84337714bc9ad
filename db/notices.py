"""The customer-notice outbox's writes: a notice is queued in the transaction that makes it
true (a status change, a disruption), once per order, event key and receiver, and only for
the receivers the customer and the channel have (services/notices.py sends them)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.notices import DELAYED, NOT_YET_DELIVERED

# One statement: the order's customer and channel give 0-3 receivers; an order whose
# customer and channel have none costs a primary-key join and writes nothing.
RECEIVERS_SQL = (
    "FROM orders o JOIN customers c ON c.code = o.customer_code "
    "LEFT JOIN channels ch ON ch.name = o.channel "
    "CROSS JOIN LATERAL (VALUES ('email', c.notice_email), ('webhook', c.notice_webhook_url), "
    "('channel', ch.notice_webhook_url)) AS r(receiver, address) "
)
_QUEUE = text(
    "INSERT INTO customer_notices (order_id, event, event_key, receiver, address) "
    "SELECT o.id, :event, :key, r.receiver, r.address "
    + RECEIVERS_SQL
    + "WHERE o.id = :id AND r.address IS NOT NULL "
    "ON CONFLICT ON CONSTRAINT uq_customer_notices_event DO NOTHING"
)
_QUEUE_DELAYED = text(
    "INSERT INTO customer_notices (order_id, event, event_key, receiver, address) "
    "SELECT o.id, CAST(:event AS varchar), CAST(:event AS varchar), r.receiver, r.address "
    + RECEIVERS_SQL
    + "WHERE o.status = ANY(:open) AND o.requested_delivery_date < :today "
    "AND r.address IS NOT NULL "
    # Orders told already are skipped, not re-inserted into a conflict every pass.
    "AND NOT EXISTS (SELECT 1 FROM customer_notices n WHERE n.order_id = o.id "
    "AND n.event_key = CAST(:event AS varchar) AND n.receiver = r.receiver) "
    "ON CONFLICT ON CONSTRAINT uq_customer_notices_event DO NOTHING "
    "RETURNING order_id"
)


async def queue_notice(session: AsyncSession, order_id: str, event: str, key: str) -> None:
    """Queue the notice of `event` (once per `key`) for every receiver of the order."""
    await session.execute(_QUEUE, {"event": event, "key": key, "id": order_id})


async def queue_delayed(session: AsyncSession, today: date) -> list[str]:
    """Queue a "delayed" notice for each order not yet delivered past its requested date
    (once per order); answers the orders newly queued."""
    rows = await session.execute(
        _QUEUE_DELAYED,
        {"event": DELAYED, "open": [s.value for s in NOT_YET_DELIVERED], "today": today},
    )
    return sorted({r[0] for r in rows})
