"""Production orders for make-to-order lines: listed for ops, completed by ops."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from api.deps import Caller, CurrentUser, SessionDep, TemporalDep, require
from api.errors import responses
from db import stock
from db.models import OrderLine, ProductionOrder, Reservation
from domain.base import Model
from domain.orders import OrderRef
from domain.types import DbId
from services.temporal import workflow_id

router = APIRouter(prefix="/production-orders", tags=["production"], responses=responses(404, 409))
log = logging.getLogger("orderflow.api.production")


class ProductionOrderOut(Model):
    id: int
    order_id: str
    sku: str
    quantity: int
    status: str
    due_date: date
    late: bool
    completed_by: str | None


def _out(p: ProductionOrder) -> ProductionOrderOut:
    late = p.status == "open" and p.due_date < datetime.now(UTC).date()
    return ProductionOrderOut(
        id=p.id,
        order_id=p.order_id,
        sku=p.sku,
        quantity=p.quantity,
        status=p.status,
        due_date=p.due_date,
        late=late,
        completed_by=p.completed_by,
    )


@router.get("")
async def list_production(
    session: SessionDep,
    _: CurrentUser,
    status: Literal["open", "completed", "cancelled"] | None = None,
) -> list[ProductionOrderOut]:
    q = select(ProductionOrder).order_by(ProductionOrder.due_date, ProductionOrder.id)
    if status is not None:
        q = q.where(ProductionOrder.status == status)
    return [_out(p) for p in (await session.scalars(q.limit(500)))]


@router.post("/{production_id}/complete")
async def complete(
    production_id: DbId,
    session: SessionDep,
    client: TemporalDep,
    user: Caller = Depends(require("ops")),
) -> ProductionOrderOut:
    """The goods are made: they enter stock already reserved for their order, once."""
    p = await session.scalar(
        select(ProductionOrder).where(ProductionOrder.id == production_id).with_for_update()
    )
    if p is None:
        raise HTTPException(404, f"no production order {production_id}")
    if p.status != "open":
        raise HTTPException(409, f"production order {production_id} is {p.status}")
    p.status, p.completed_by, p.completed_at = "completed", user.name, datetime.now(UTC)
    await stock.receive(session, p.sku, p.quantity, reserved=True, key=f"production:{p.id}")
    await session.execute(
        insert(Reservation).values(
            order_id=p.order_id,
            order_line_id=p.order_line_id,
            sku=p.sku,
            quantity=p.quantity,
            status="active",
        )
    )
    await session.execute(
        update(OrderLine).where(OrderLine.id == p.order_line_id).values(reserved_qty=p.quantity)
    )
    await session.commit()
    try:
        await client.get_workflow_handle(workflow_id(p.order_id)).signal(
            "stock_replenished", OrderRef(order_id=p.order_id)
        )
    except Exception as err:  # its own recheck timer finds the reservation
        log.warning("could not wake %s: %s", p.order_id, err)
    return _out(p)
