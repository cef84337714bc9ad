"""Stock levels. Raising stock wakes the backordered orders waiting for that SKU."""

import logging

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field
from sqlalchemy import func, select, update
from temporalio.client import Client

from orderflow.api.deps import CurrentUser, SessionDep, TemporalDep, require
from orderflow.db.models import Order, OrderLine, Stock
from orderflow.domain.payloads import Model, OrderRef
from orderflow.domain.status import OrderStatus
from orderflow.temporal_client import workflow_id

router = APIRouter(prefix="/inventory", tags=["inventory"])
log = logging.getLogger("orderflow.api.inventory")


class StockIn(Model):
    on_hand: int = Field(ge=0)


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
async def set_stock(sku: str, body: StockIn, session: SessionDep, client: TemporalDep) -> StockOut:
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
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(
            on_hand=body.on_hand,
            received=Stock.received + max(body.on_hand - current.on_hand, 0),
            updated_at=func.now(),
        )
    )
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


@router.get("/{sku}")
async def get_stock(sku: str, session: SessionDep, _: CurrentUser) -> StockOut:
    s = await session.get(Stock, sku)
    if s is None:
        raise HTTPException(404, f"no product {sku}")
    return _out(s)
