"""Substitution: a backordered order's lines of a disrupted (or short) SKU become one of its
substitutes, in one transaction: what the old lines hold reserved is released, the lines
take the substitute at the same quantity and are priced again, the order total follows and
the timeline says what changed. The workflow then sends the order back to reservation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo, stock
from db.models import Order, OrderEvent, OrderLine, ProductionOrder, Reservation
from db.quotes import quote
from domain.money import fmt
from domain.orders import Address, OrderIn, OrderLineIn, PricedLine
from domain.problems import Problem
from domain.substitution import SubstituteRequest, SubstituteResult
from services.disruptions import substitutes


class SubstitutionActivities(DbActivities):
    @activity.defn(name="substitution.substitute_line")
    async def substitute_line(self, req: SubstituteRequest) -> SubstituteResult:
        """Replace the order's lines of `req.sku` by `req.substitute` (same quantity, priced
        by the pricing engine), releasing what they held reserved. Refused, nothing written,
        when the request is wrong or the new total is above what the approvals covered.
        Idempotent by `req.key`: a retry reports what the first attempt did."""
        async with self.tx() as s:
            order = await s.get_one(Order, req.order_id, with_for_update=True)
            done = await s.scalar(
                select(OrderEvent.detail).where(
                    OrderEvent.order_id == order.id, OrderEvent.step_key == req.key
                )
            )
            if done is not None:
                return SubstituteResult(ok=True, summary=done, total=order.total)
            # Locked in SKU order, like a reservation (activities/inventory.py).
            lines = (
                await s.scalars(
                    select(OrderLine)
                    .where(OrderLine.order_id == order.id)
                    .order_by(OrderLine.sku)
                    .with_for_update()
                )
            ).all()
            targets = sorted((ln for ln in lines if ln.sku == req.sku), key=lambda ln: ln.line_no)
            problems = await _check(s, order, req, bool(targets), {ln.sku for ln in lines})
            if problems:
                return SubstituteResult(ok=False, problems=problems)
            refused = await _refusal(s, targets)
            if refused is not None:
                return SubstituteResult(ok=False, refused=refused)
            draft = OrderIn(
                customer_code=order.customer_code,
                channel=order.channel,
                lines=[OrderLineIn(sku=req.substitute, quantity=ln.quantity) for ln in targets],
                ship_to=Address(**order.ship_to) if order.ship_to else None,
            )
            q = await quote(s, draft, datetime.now(UTC).date())
            if q.problems or q.priced is None:
                return SubstituteResult(
                    ok=False, problems=[_about_substitute(p) for p in q.problems]
                )
            priced = q.priced.lines
            subtotal = sum(
                (ln.line_total for ln in lines if ln.sku != req.sku), Decimal("0.00")
            ) + sum((p.line_total for p in priced), Decimal("0.00"))
            # The order-level discount granted at entry stays as it was (never above the goods).
            discount = min(order.order_discount, subtotal)
            total = subtotal - discount
            covered = req.covered_total if req.covered_total is not None else order.total
            if total > covered:
                return SubstituteResult(
                    ok=False,
                    refused=f"substitute {req.substitute} would raise the order total from "
                    f"{fmt(order.total)} to {fmt(total)}, above the {fmt(covered)} its credit "
                    f"check and approvals covered ({fmt(total - covered)} more): cancel the "
                    "order and enter it again with the substitute, or have a sales manager "
                    "amend it by hand",
                )
            released = await _release(s, targets)
            changed = [_replace(ln, p) for ln, p in zip(targets, priced, strict=True)]
            summary = (
                "; ".join(changed)
                + f"; total {fmt(order.total)} -> {fmt(total)}"
                + (f"; {released} reserved unit(s) of {req.sku} released" if released else "")
            )
            order.subtotal = subtotal
            order.order_discount = discount
            order.total = total
            order.updated_at = func.now()
            await repo.record_event(
                s,
                order.id,
                req.key,
                status=None,
                kind="amendment",
                actor=req.by,
                detail=f"substituted by {req.by}: {summary}",
            )
            return SubstituteResult(ok=True, summary=summary, total=total, released_units=released)


async def _check(
    s: AsyncSession, order: Order, req: SubstituteRequest, has_line: bool, on_order: set[str]
) -> list[Problem]:
    """What is wrong with the request itself (a 422 naming the field)."""
    if not has_line:
        return [
            Problem(
                loc=["sku"],
                code="not_on_order",
                message=f"sku: order {order.id} has no line of {req.sku}",
            )
        ]
    if req.substitute in on_order:
        # One line per SKU (as at entry): picking, shortages and prices go by SKU.
        return [
            Problem(
                loc=["substitute"],
                code="substitute_on_order",
                message=f"substitute: {req.substitute} is already on order {order.id}; "
                "amend that line's quantity instead",
            )
        ]
    offered = await substitutes(s, req.sku)
    if req.substitute not in offered:
        return [
            Problem(
                loc=["substitute"],
                code="not_a_substitute",
                message=f"substitute: {req.substitute} is not a substitute of {req.sku} "
                f"(its substitutes: {', '.join(offered) or 'none'})",
            )
        ]
    if await stock.disrupted(s, req.substitute):
        return [
            Problem(
                loc=["substitute"],
                code="substitute_disrupted",
                message=f"substitute: {req.substitute} is itself unavailable (an active "
                "disruption); pick another substitute",
            )
        ]
    return []


async def _refusal(s: AsyncSession, targets: list[OrderLine]) -> str | None:
    """Why these lines cannot change any more (a 409), or None."""
    for ln in targets:
        if ln.shipped_qty:
            return (
                f"line {ln.line_no}: {ln.shipped_qty} of {ln.sku} x{ln.quantity} already "
                "shipped, so the line cannot change; cancel the remainder and order the "
                "substitute separately"
            )
        made = await s.scalar(
            select(ProductionOrder.id).where(
                ProductionOrder.order_line_id == ln.id, ProductionOrder.status != "cancelled"
            )
        )
        if made is not None:
            return (
                f"line {ln.line_no}: {ln.sku} is being made for this order (production order "
                f"#{made}), so the line cannot change"
            )
    return None


async def _release(s: AsyncSession, targets: list[OrderLine]) -> int:
    """Give back what the old lines hold reserved (each reservation row once: its status
    flips to released in this transaction); answers the units released."""
    rows = (
        await s.execute(
            update(Reservation)
            .where(
                Reservation.order_line_id.in_([ln.id for ln in targets]),
                Reservation.status == "active",
            )
            .values(status="released", released_at=func.now())
            .returning(Reservation.sku, Reservation.quantity, Reservation.order_line_id)
        )
    ).all()
    by_line = {ln.id: ln for ln in targets}
    for sku, qty, line_id in sorted(rows):
        await stock.release(s, sku, qty)
        by_line[line_id].reserved_qty -= qty
    return sum(r[1] for r in rows)


def _replace(ln: OrderLine, p: PricedLine) -> str:
    """The line takes the substitute, priced; answers what changed, in words."""
    before = f"line {ln.line_no}: {ln.sku} x{ln.quantity} replaced by {p.sku} x{p.quantity}"
    words = f"{before}, {fmt(ln.line_total)} -> {fmt(p.line_total)}"
    ln.sku = p.sku
    ln.list_price = p.list_price
    ln.unit_price = p.unit_price
    ln.line_total = p.line_total
    ln.price_rule = p.price_rule
    ln.override_deviation = p.override_deviation
    ln.below_floor = p.below_floor
    ln.discount_beyond_max = p.discount_beyond_max
    return words


def _about_substitute(p: Problem) -> Problem:
    """A problem of the priced substitute line, said of the request's `substitute` field."""
    return Problem(loc=["substitute"], code=p.code, message=f"substitute: {p.message}")
