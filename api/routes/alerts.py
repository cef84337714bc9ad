"""On-call alerts: list and acknowledge."""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, require
from api.errors import responses
from db.models import Alert
from domain.base import Model
from domain.types import DbId

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=responses(404))


class AlertOut(Model):
    id: int
    dedup_key: str
    kind: str
    severity: str
    order_id: str | None
    summary: str
    status: str
    created_at: datetime
    acknowledged_by: str | None
    delivered_at: datetime | None


@router.get("")
async def list_alerts(
    session: SessionDep, _: CurrentUser, status: Literal["open", "acknowledged"] | None = None
) -> list[AlertOut]:
    q = select(Alert).order_by(Alert.created_at.desc()).limit(500)
    if status is not None:
        q = q.where(Alert.status == status)
    return [AlertOut.model_validate(a, from_attributes=True) for a in (await session.scalars(q))]


@router.post("/{alert_id}/ack", dependencies=[Depends(require("ops"))])
async def ack(alert_id: DbId, session: SessionDep, user: CurrentUser) -> AlertOut:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert {alert_id}")
    alert.status = "acknowledged"
    alert.acknowledged_by = user.name
    await session.commit()
    return AlertOut.model_validate(alert, from_attributes=True)
