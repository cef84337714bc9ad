"""Disruptions: ops mark a SKU unavailable until a date, and lift it (services/disruptions.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, TemporalDep, require
from api.errors import ProblemsError, responses
from db.models import Disruption
from domain.base import Model
from domain.notices import DisruptionIn, until_problem
from domain.problems import Problem
from domain.types import DbId
from services import disruptions
from services.disruptions import DisruptionError

router = APIRouter(prefix="/disruptions", tags=["disruptions"], responses=responses(404, 409))


class DisruptionOut(Model):
    id: int
    sku: str
    until: date
    reason: str
    status: str
    created_by: str
    # Open orders that needed the SKU when it was declared (each told, with `until`).
    affected_orders: list[str]
    substitutes: list[str]


class LiftOut(DisruptionOut):
    # The backordered orders signalled to try again, in that order (urgent, then oldest).
    woken_orders: list[str]


def _out(v: disruptions.DisruptionView) -> DisruptionOut:
    return DisruptionOut(**vars(v))


def _http(err: DisruptionError) -> HTTPException:
    return HTTPException(err.status, str(err))


@router.post("", status_code=201, dependencies=[Depends(require("ops"))])
async def declare(body: DisruptionIn, session: SessionDep, user: CurrentUser) -> DisruptionOut:
    """Mark a SKU unavailable until a date: it cannot be reserved; every open order needing it
    gets a timeline event and its customer a notice; the answer lists its substitutes."""
    why = until_problem(body.until, datetime.now(UTC).date())
    if why:
        raise ProblemsError([Problem(loc=["body", "until"], code="past_date", message=why)])
    try:
        v = await disruptions.declare(session, body.sku, body.until, body.reason, user.name)
    except DisruptionError as err:
        raise _http(err) from err
    await session.commit()
    return _out(v)


@router.get("")
async def list_disruptions(session: SessionDep, active: bool | None = None) -> list[DisruptionOut]:
    """Disruptions, newest first; `active=true` only those in force."""
    q = select(Disruption).order_by(Disruption.id.desc()).limit(500)
    if active is not None:
        q = q.where((Disruption.status == "active") == active)
    rows = (await session.scalars(q)).all()
    return [_out(await disruptions.view(session, d)) for d in rows]


@router.get("/{disruption_id}")
async def get_disruption(disruption_id: DbId, session: SessionDep) -> DisruptionOut:
    d = await session.get(Disruption, disruption_id)
    if d is None:
        raise HTTPException(404, f"no disruption {disruption_id}")
    return _out(await disruptions.view(session, d))


@router.post("/{disruption_id}/lift", dependencies=[Depends(require("ops"))])
async def lift(
    disruption_id: DbId, session: SessionDep, client: TemporalDep, user: CurrentUser
) -> LiftOut:
    """End the disruption: the SKU can be reserved again and the orders waiting for it are
    woken, urgent first, then oldest first."""
    try:
        d = await disruptions.lift(session, disruption_id, user.name)
    except DisruptionError as err:
        raise _http(err) from err
    await session.commit()
    waiting = await disruptions.waiting_orders(session, d.sku)
    woken = await disruptions.wake(client, waiting)
    return LiftOut(**vars(await disruptions.view(session, d)), woken_orders=woken)
