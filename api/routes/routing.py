"""The approval routing table, editable by admin; running orders keep their rules.

A change can be tried first: `POST /routing-rules/dry-run` (or `PUT` with `"dry_run": true`)
replays it on the recent orders and saves nothing (services/routing.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Caller, CurrentUser, SessionDep, SettingsDep, require
from db import repo
from db.models import RoutingRuleRow
from domain.approvals import RoutingRule
from domain.base import Model
from domain.routing import DryRun
from services.routing import dry_run

router = APIRouter(prefix="/routing-rules", tags=["routing"])

# How far back a dry run may replay (the facts of a year of orders at most).
MAX_DRY_RUN_DAYS = 366


class RoutingTable(Model):
    version: int = 0
    rules: list[RoutingRule] = Field(max_length=100)


class RoutingEdit(RoutingTable):
    """A new table; with `dry_run`, replayed on the last `days` days and not saved."""

    dry_run: bool = False
    days: int = Field(default=30, ge=1, le=MAX_DRY_RUN_DAYS)


class DryRunRequest(Model):
    rules: list[RoutingRule] = Field(max_length=100)
    days: int = Field(default=30, ge=1, le=MAX_DRY_RUN_DAYS)


@router.get("")
async def get_rules(session: SessionDep, _: CurrentUser) -> RoutingTable:
    rules, version = await repo.load_routing(session)
    return RoutingTable(version=version, rules=rules)


@router.put("", response_model=None)
async def replace_rules(
    body: RoutingEdit,
    session: SessionDep,
    settings: SettingsDep,
    user: Annotated[Caller, Depends(require())],
) -> dict[str, Any] | DryRun:
    """Replace the whole table (one version per edit), or only dry-run it."""
    if body.dry_run:
        return await _dry_run(session, settings.approval_reminder_seconds, body.rules, body.days)
    await session.execute(delete(RoutingRuleRow))
    session.add_all([RoutingRuleRow(**rule.model_dump()) for rule in body.rules])
    version = await repo.bump_version(session, "routing", user.name)
    await session.commit()
    return {"version": version, "rules": len(body.rules)}


@router.post("/dry-run")
async def dry_run_rules(
    body: DryRunRequest,
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Caller, Depends(require())],
) -> DryRun:
    """What the proposed table would have routed differently over the last `days` days."""
    return await _dry_run(session, settings.approval_reminder_seconds, body.rules, body.days)


async def _dry_run(
    session: AsyncSession, reminder_seconds: float, rules: list[RoutingRule], days: int
) -> DryRun:
    # A role with no decision in the window is costed at its reminder SLA: the time an
    # approver is expected to have acted by.
    fallback = Decimal(str(reminder_seconds)) / 3600
    return await dry_run(session, rules, days, fallback)
