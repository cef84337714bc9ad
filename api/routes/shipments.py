"""The carrier webhook: shipment events become signals to the order's workflow."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select, text
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser, SessionDep, TemporalDep, channel_scope, require
from api.errors import responses
from db import repo
from db.models import Order
from domain.base import Model
from domain.shipping import DeliveryEvent
from domain.types import TrackingNumber
from services.temporal import workflow_id

router = APIRouter(prefix="/shipments", tags=["shipments"], responses=responses(404))


# The shipment's order and its channel (plain SQL: carriers call this for every shipment).
_SHIPMENT = text(
    "SELECT s.order_id, o.channel FROM shipments s JOIN orders o ON o.id = s.order_id "
    "WHERE s.tracking_number = :tracking"
)


class ShipmentEventIn(Model):
    status: Literal["in_transit", "delivered", "exception"]
    at: datetime | None = None


@router.post("/{tracking_number}/events", dependencies=[Depends(require("channel", "ops"))])
async def shipment_event(
    tracking_number: TrackingNumber,
    body: ShipmentEventIn,
    session: SessionDep,
    client: TemporalDep,
    user: CurrentUser,
) -> dict[str, str]:
    found = (await session.execute(_SHIPMENT, {"tracking": tracking_number})).first()
    own = channel_scope(user)  # a channel token: only its own channel's shipments
    if found is None or (own is not None and found.channel != own):
        raise HTTPException(404, f"no shipment with tracking number {tracking_number}")
    order_id = found.order_id
    event = DeliveryEvent(tracking_number=tracking_number, status=body.status, at=body.at)
    try:
        await client.get_workflow_handle(workflow_id(order_id)).signal("carrier_event", event)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # The order has ended (carriers repeat webhooks; a shipment written off as lost may
        # turn up): nothing to drive, but the event is kept on the order's timeline.
        status = await session.scalar(select(Order.status).where(Order.id == order_id))
        await repo.record_event(
            session,
            order_id,
            f"carrier-late:{tracking_number}:{body.status}",
            status=None,
            kind="note",
            detail=f"carrier reported {tracking_number} {body.status} after the order ended "
            f"({status})",
        )
        await session.commit()
        return {"status": "recorded", "order_id": order_id, "order_status": str(status)}
    return {"status": "accepted", "order_id": order_id}
