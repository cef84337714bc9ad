"""Disruptions: a SKU that cannot be reserved until a date.

Declaring one (in one transaction) stores it, finds every open order with an unreserved,
unshipped quantity of the SKU, writes a timeline event on each and queues their customers'
notice with the new expected date. db/stock.py `reserve` gives nothing of a disrupted SKU, so
those orders (and new ones) backorder by the usual rules. Lifting it wakes the backordered
ones with the `stock_replenished` signal, urgent first, then oldest first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from db import repo
from db.models import Disruption, Order, OrderLine, Product, ProductSubstitute, Stock
from db.notices import queue_notice
from domain.notices import DISRUPTED
from domain.orders import OrderLineIn, OrderRef
from domain.status import FINAL_STATUSES, OrderStatus
from services.temporal import workflow_id

log = logging.getLogger("orderflow.disruptions")

# Still owes the customer goods: not over, not delivered.
_OPEN = [s.value for s in OrderStatus if s not in FINAL_STATUSES and s is not OrderStatus.DELIVERED]


class DisruptionError(ValueError):
    """A request the disruption cannot take: `status` is the HTTP answer it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class DisruptionView:
    id: int
    sku: str
    until: date
    reason: str
    status: str
    created_by: str
    affected_orders: list[str]
    substitutes: list[str] = field(default_factory=list)


async def substitutes(s: AsyncSession, sku: str) -> list[str]:
    """The product's substitutes, in the order to offer them."""
    return list(
        (
            await s.scalars(
                select(ProductSubstitute.substitute_sku)
                .where(ProductSubstitute.sku == sku)
                .order_by(ProductSubstitute.position)
            )
        ).all()
    )


async def view(s: AsyncSession, d: Disruption) -> DisruptionView:
    return DisruptionView(
        id=d.id,
        sku=d.sku,
        until=d.until,
        reason=d.reason,
        status=d.status,
        created_by=d.created_by,
        affected_orders=list(d.affected),
        substitutes=await substitutes(s, d.sku),
    )


async def affected_orders(s: AsyncSession, sku: str) -> list[str]:
    """Open orders with a quantity of `sku` neither reserved nor shipped, oldest first."""
    rows = await s.execute(
        select(Order.id, Order.created_at)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .where(
            OrderLine.sku == sku,
            OrderLine.reserved_qty + OrderLine.shipped_qty < OrderLine.quantity,
            Order.status.in_(_OPEN),
        )
        .distinct()
        .order_by(Order.created_at, Order.id)
    )
    return [r[0] for r in rows.all()]


async def declare(
    s: AsyncSession, sku: str, until: date, reason: str, actor: str
) -> DisruptionView:
    """Store the disruption and tell every affected order and customer (the caller commits)."""
    if await s.get(Product, sku) is None:
        raise DisruptionError(404, f"no product {sku}")
    # The stock row's lock orders this against reservations in flight (db/stock.py reserve
    # holds it too): a reservation either committed before, or sees the disruption.
    await s.scalar(select(Stock.sku).where(Stock.sku == sku).with_for_update())
    # Under that lock a second declaration for the SKU waits here, then sees the first
    # (the partial unique index uq_disruptions_active_sku backs this up).
    active = await s.scalar(
        select(Disruption.id).where(Disruption.sku == sku, Disruption.status == "active")
    )
    if active is not None:
        raise DisruptionError(
            409, f"{sku} already has an active disruption (#{active}); lift it first"
        )
    d = Disruption(sku=sku, until=until, reason=reason, created_by=actor, affected=[])
    s.add(d)
    await s.flush()
    orders = await affected_orders(s, sku)
    for order_id in orders:
        await repo.record_event(
            s,
            order_id,
            f"disruption:{d.id}",
            status=None,
            kind="disruption",
            actor=actor,
            detail=f"{sku} unavailable until {until.isoformat()}: {reason}",
        )
        await queue_notice(s, order_id, DISRUPTED, f"{DISRUPTED}:{d.id}")
    d.affected = orders
    await s.flush()
    return await view(s, d)


async def lift(s: AsyncSession, disruption_id: int, actor: str) -> Disruption:
    """Mark it lifted (the caller commits, then calls `wake`)."""
    d = await s.get(Disruption, disruption_id, with_for_update=True)
    if d is None:
        raise DisruptionError(404, f"no disruption {disruption_id}")
    if d.status != "active":
        raise DisruptionError(409, f"disruption {disruption_id} is already {d.status}")
    d.status = "lifted"
    d.lifted_by = actor
    d.lifted_at = datetime.now(UTC)
    return d


async def waiting_orders(s: AsyncSession, sku: str) -> list[str]:
    """Backordered orders with a line of `sku`: urgent first, then oldest first."""
    rows = await s.execute(
        select(Order.id)
        .where(
            Order.status == OrderStatus.BACKORDERED.value,
            select(OrderLine.id)
            .where(OrderLine.order_id == Order.id, OrderLine.sku == sku)
            .exists(),
        )
        .order_by(case((Order.priority == "urgent", 0), else_=1), Order.created_at, Order.id)
    )
    return [r[0] for r in rows.all()]


async def wake(client: Client, order_ids: list[str]) -> list[str]:
    """Signal each order, in the given order; answers those signalled. An order not reached
    still finds the stock at its own periodic recheck."""
    woken: list[str] = []
    for order_id in order_ids:
        try:
            await client.get_workflow_handle(workflow_id(order_id)).signal(
                "stock_replenished", OrderRef(order_id=order_id)
            )
            woken.append(order_id)
        except Exception as err:
            log.warning("could not wake %s: %s", order_id, err)
    return woken


async def substitute_lines(
    s: AsyncSession, order_id: str, sku: str, substitute: str
) -> list[OrderLineIn]:
    """The order's lines with every line of `sku` replaced by `substitute` (same quantity),
    for the amend Update; `substitute` must be one the product lists. Also the API's quick
    422 before a backordered order's `substitute` Update (whose step checks it again)."""
    lines = (
        await s.scalars(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
        )
    ).all()
    if sku not in {ln.sku for ln in lines}:
        raise DisruptionError(422, f"sku: order {order_id} has no line of {sku}")
    offered = await substitutes(s, sku)
    if substitute not in offered:
        raise DisruptionError(
            422,
            f"substitute: {substitute} is not a substitute of {sku} "
            f"(its substitutes: {', '.join(offered) or 'none'})",
        )
    return [
        OrderLineIn(
            sku=substitute if ln.sku == sku else ln.sku,
            quantity=ln.quantity,
            # A price the channel asked for stays asked for; the rest are priced again.
            unit_price=ln.unit_price if ln.override_deviation is not None else None,
        )
        for ln in lines
    ]
