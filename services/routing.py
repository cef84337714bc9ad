"""The rules' dry run: replay a proposed routing table on the recent orders' stored facts."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import repo
from db.models import Approval, Order
from domain.approvals import RoutingRule
from domain.routing import DryRun, RoutingFacts, compare, facts_from_json


async def dry_run(
    session: AsyncSession, proposed: list[RoutingRule], days: int, fallback_hours: Decimal
) -> DryRun:
    """How `proposed` would have routed the orders of the last `days` days, against the
    table in force now, both replayed with live routing's `route` on the facts each order
    was routed with (stored by the assessment, so the same facts as at the time; orders
    from before the facts were stored are counted as skipped)."""
    since = func.now() - timedelta(days=days)
    rows = (
        await session.execute(
            select(Order.id, Order.routing_facts)
            .where(Order.created_at >= since, Order.routing_facts.is_not(None))
            .order_by(Order.created_at, Order.id)
        )
    ).all()
    skipped = await session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.created_at >= since, Order.routing_facts.is_(None))
    )
    current, _ = await repo.load_routing(session)
    facts: list[tuple[str, RoutingFacts]] = [(oid, facts_from_json(f)) for oid, f in rows]
    hours = await _hours_per_level(session, since)
    roles = {r.role for r in current} | {r.role for r in proposed}
    per_level: dict[str, Decimal] = {role: hours.get(role, fallback_hours) for role in roles}
    return compare(facts, current, proposed, per_level, days=days, skipped=skipped or 0)


async def _hours_per_level(
    session: AsyncSession, since: ColumnElement[datetime]
) -> dict[str, Decimal]:
    """The mean time a level of each role waited for its decision in the window."""
    waited = func.extract("epoch", Approval.decided_at - Approval.requested_at) / 3600
    rows = await session.execute(
        select(Approval.role, func.avg(waited))
        .where(Approval.requested_at >= since, Approval.decided_at.is_not(None))
        .group_by(Approval.role)
    )
    return {role: Decimal(str(avg)) for role, avg in rows.all() if avg is not None}
