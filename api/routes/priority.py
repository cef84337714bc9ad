"""Order priority: the rules that make an order urgent (ops, admin), and ops setting one
order's priority by hand (docs/warehouse-layout.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from api.deps import Caller, SessionDep, require
from api.errors import responses
from db.models import Order
from domain.base import Model, NonEmpty
from domain.priority import Priority, PriorityRule
from domain.status import FINAL_STATUSES
from domain.types import Code40
from services import priority

router = APIRouter(tags=["priority"], responses=responses(404, 409))

OpsDep = Annotated[Caller, Depends(require("ops"))]


class PriorityRules(Model):
    version: int = 0
    rules: list[PriorityRule] = Field(max_length=100)


class RulesChanged(Model):
    version: int
    rules: int
    # Open orders (before picking, priority set by rule) looked at, and those that changed.
    reapplied_to: int
    changed: list[str]


class PriorityIn(Model):
    priority: Priority
    reason: NonEmpty


class PriorityOut(Model):
    id: str
    priority: Priority
    priority_source: str


@router.get("/priority-rules")
async def get_rules(session: SessionDep, _: OpsDep) -> PriorityRules:
    rules, version = await priority.load_rules(session)
    return PriorityRules(version=version, rules=rules)


@router.put("/priority-rules")
async def replace_rules(body: PriorityRules, session: SessionDep, user: OpsDep) -> RulesChanged:
    """Replace the whole table (one version per edit); open orders not yet picked whose
    priority a rule set follow the new rules at once."""
    done = await priority.replace_rules(session, body.rules, user.name, datetime.now(UTC).date())
    return RulesChanged(
        version=done.version,
        rules=len(body.rules),
        reapplied_to=done.checked,
        changed=done.changed,
    )


@router.put("/orders/{order_id}/priority")
async def set_priority(
    order_id: Code40, body: PriorityIn, session: SessionDep, user: OpsDep
) -> PriorityOut:
    """Set by hand: kept whatever the rules say later; written in the order's timeline."""
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    if order.status in FINAL_STATUSES:
        raise HTTPException(409, f"order {order_id} is {order.status}: nothing left to hurry")
    done = await priority.set_by_ops(session, order_id, body.priority, body.reason, user.name)
    if done is None:
        raise HTTPException(404, f"no order {order_id}")
    return PriorityOut.model_validate(done)
