"""The carrier webhook: shipment events become signals to the order's workflow."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from orderflow.api.deps import SessionDep, TemporalDep, require
from orderflow.db.models import Shipment
from orderflow.domain.payloads import DeliveryEvent, Model
from orderflow.temporal_client import workflow_id

router = APIRouter(prefix="/shipments", tags=["shipments"])


class ShipmentEventIn(Model):
    status: Literal["in_transit", "delivered", "exception"]
    at: datetime | None = None


@router.post("/{tracking_number}/events", dependencies=[Depends(require("channel", "ops"))])
async def shipment_event(
    tracking_number: str, body: ShipmentEventIn, session: SessionDep, client: TemporalDep
) -> dict[str, str]:
    order_id = await session.scalar(
        select(Shipment.order_id).where(Shipment.tracking_number == tracking_number)
    )
    if order_id is None:
        raise HTTPException(404, f"no shipment with tracking number {tracking_number}")
    event = DeliveryEvent(tracking_number=tracking_number, status=body.status, at=body.at)
    await client.get_workflow_handle(workflow_id(order_id)).signal("carrier_event", event)
    return {"status": "accepted", "order_id": order_id}
