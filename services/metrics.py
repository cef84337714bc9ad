"""Prometheus metrics of the order pipeline (worker side) and of intake (API side)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Alert, Approval, Order
from db.repo import Moved
from domain.status import FINAL_STATUSES

log = logging.getLogger("orderflow.orders")

ORDERS_STARTED = Counter(
    "orderflow_orders_started_total", "Orders accepted and started", ["channel"]
)
ORDERS_REFUSED = Counter("orderflow_orders_refused_total", "Orders refused at entry", ["channel"])
ORDERS_FINISHED = Counter("orderflow_orders_finished_total", "Orders that ended", ["outcome"])
STEP_SECONDS = Histogram(
    "orderflow_step_seconds",
    "Time an order spent in a status before moving on",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800),
)
INTAKE_SECONDS = Histogram(
    "orderflow_intake_seconds",
    "POST /orders latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5),
)
APPROVALS_PENDING = Gauge("orderflow_approvals_pending", "Approval levels waiting", ["role"])
ALERTS_OPEN = Gauge("orderflow_alerts_open", "Alerts not yet acknowledged")
ORDERS_BY_STATUS = Gauge("orderflow_orders", "Orders by current status", ["status"])


def observe(moved: Moved) -> None:
    """Count a committed status change and log it with the order and workflow ids."""
    STEP_SECONDS.labels(moved.previous).observe(moved.seconds)
    if moved.status in FINAL_STATUSES:
        ORDERS_FINISHED.labels(moved.status).inc()
    log.info(
        "order %s: %s -> %s after %.3fs",
        moved.order_id,
        moved.previous,
        moved.status,
        moved.seconds,
        extra={"order_id": moved.order_id, "workflow_id": f"order-{moved.order_id}"},
    )


async def refresh_gauges(session: AsyncSession) -> None:
    """Set the state gauges from the database (cheap: grouped counts on indexed columns)."""
    pending = (
        await session.execute(
            select(Approval.role, func.count())
            .where(Approval.status == "pending")
            .group_by(Approval.role)
        )
    ).all()
    APPROVALS_PENDING.clear()
    for role, n in pending:
        APPROVALS_PENDING.labels(role).set(n)
    ALERTS_OPEN.set(
        await session.scalar(select(func.count()).select_from(Alert).where(Alert.status == "open"))
        or 0
    )
    ORDERS_BY_STATUS.clear()
    for status, n in (
        await session.execute(select(Order.status, func.count()).group_by(Order.status))
    ).all():
        ORDERS_BY_STATUS.labels(status).set(n)
