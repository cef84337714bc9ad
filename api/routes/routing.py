"""The approval routing table, editable by admin; running orders keep their rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlalchemy import delete

from api.deps import Caller, CurrentUser, SessionDep, require
from db import repo
from db.models import RoutingRuleRow
from domain.approvals import RoutingRule
from domain.base import Model

router = APIRouter(prefix="/routing-rules", tags=["routing"])


class RoutingTable(Model):
    version: int = 0
    rules: list[RoutingRule] = Field(max_length=100)


@router.get("")
async def get_rules(session: SessionDep, _: CurrentUser) -> RoutingTable:
    rules, version = await repo.load_routing(session)
    return RoutingTable(version=version, rules=rules)


@router.put("")
async def replace_rules(
    body: RoutingTable, session: SessionDep, user: Annotated[Caller, Depends(require())]
) -> dict[str, Any]:
    """Replace the whole table (one version per edit)."""
    await session.execute(delete(RoutingRuleRow))
    session.add_all([RoutingRuleRow(**rule.model_dump()) for rule in body.rules])
    version = await repo.bump_version(session, "routing", user.name)
    await session.commit()
    return {"version": version, "rules": len(body.rules)}
