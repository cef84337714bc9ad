"""Stock levels. Raising stock wakes the backordered orders waiting for that SKU."""

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from temporalio.client import Client

from api.deps import CurrentUser, SessionDep, TemporalDep, require
from api.errors import responses
from db import stock
from db.models import Order, OrderLine, Replenishment, Stock
from domain.base import Model
from domain.orders import OrderRef
from domain.status import OrderStatus
from domain.types import Code40, Count, DbId, Quantity, SaneDate
from services.temporal import workflow_id

router = APIRouter(prefix="/inventory", tags=["inventory"], responses=responses(404, 409))
log = logging.getLogger("orderflow.api.inventory")


class StockIn(Model):
    on_hand: Count


class StockOut(Model):
    sku: str
    on_hand: int
    reserved: int
    available: int


def _out(s: Stock) -> StockOut:
    return StockOut(
        sku=s.sku, on_hand=s.on_hand, reserved=s.reserved, available=s.on_hand - s.reserved
    )


@router.put("/{sku}", dependencies=[Depends(require("ops"))])
async def set_stock(
    sku: Code40, body: StockIn, session: SessionDep, client: TemporalDep
) -> StockOut:
    current = await session.scalar(select(Stock).where(Stock.sku == sku).with_for_update())
    if current is None:
        raise HTTPException(404, f"no product {sku}")
    if body.on_hand < current.reserved:
        raise HTTPException(
            409,
            f"on_hand {body.on_hand} is below the {current.reserved} unit(s) reserved for "
            f"open orders of {sku}; release or ship them first",
        )
    raised = body.on_hand > current.on_hand
    await stock.adjust(session, sku, body.on_hand)  # the row is locked: it cannot refuse now
    await session.commit()
    await session.refresh(current)
    if raised:
        await wake_backorders(session, client, sku)
    return _out(current)


async def wake_backorders(session: SessionDep, client: Client, sku: str) -> int:
    """Signal the orders waiting for `sku`, first come first served."""
    waiting = (
        await session.scalars(
            select(Order.id)
            .join(OrderLine, OrderLine.order_id == Order.id)
            .where(Order.status == OrderStatus.BACKORDERED.value, OrderLine.sku == sku)
            .order_by(Order.created_at)
        )
    ).all()
    for order_id in waiting:
        try:
            await client.get_workflow_handle(workflow_id(order_id)).signal(
                "stock_replenished", OrderRef(order_id=order_id)
            )
        except Exception as err:  # the order's own recheck timer still finds the stock
            log.warning("could not wake %s: %s", order_id, err)
    return len(waiting)


class ReplenishmentIn(Model):
    quantity: Quantity
    expected_date: SaneDate


class ReplenishmentOut(ReplenishmentIn):
    id: int
    sku: str
    status: str


@router.post("/{sku}/replenishments", status_code=201, dependencies=[Depends(require("ops"))])
async def expect_stock(sku: Code40, body: ReplenishmentIn, session: SessionDep) -> ReplenishmentOut:
    """Announce stock on its way; short lines at entry then say when to expect it."""
    if await session.get(Stock, sku) is None:
        raise HTTPException(404, f"no product {sku}")
    row = Replenishment(
        sku=sku, quantity=body.quantity, expected_date=body.expected_date, status="open"
    )
    session.add(row)
    await session.commit()
    return ReplenishmentOut(
        id=row.id,
        sku=sku,
        quantity=row.quantity,
        expected_date=row.expected_date,
        status=row.status,
    )


@router.post("/replenishments/{replenishment_id}/receive", dependencies=[Depends(require("ops"))])
async def receive(replenishment_id: DbId, session: SessionDep, client: TemporalDep) -> StockOut:
    """Goods received: stock goes up once, and waiting backorders are woken."""
    row = await session.scalar(
        select(Replenishment).where(Replenishment.id == replenishment_id).with_for_update()
    )
    if row is None:
        raise HTTPException(404, f"no replenishment {replenishment_id}")
    if row.status != "open":
        raise HTTPException(409, f"replenishment {replenishment_id} is already {row.status}")
    row.status = "received"
    row.received_at = datetime.now(UTC)
    await stock.receive(session, row.sku, row.quantity, key=f"replenishment:{row.id}")
    await session.commit()
    level = await session.get(Stock, row.sku, populate_existing=True)
    assert level is not None
    await wake_backorders(session, client, row.sku)
    return _out(level)


@router.get("/{sku}")
async def get_stock(sku: Code40, session: SessionDep, _: CurrentUser) -> StockOut:
    s = await session.get(Stock, sku)
    if s is None:
        raise HTTPException(404, f"no product {sku}")
    return _out(s)
