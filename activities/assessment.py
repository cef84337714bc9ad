"""Assessment: re-check the order inside the workflow, credit control and approval routing
(its activities keep their names, `intake.assess_order` and `intake.amend_order`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import Customer, Order, OrderEvent, OrderLine
from db.quotes import line_rows, quote
from domain.approvals import ApprovalLevel, Assessment, AssessRequest, RoutingRule
from domain.credit import CreditVerdict, assess_credit
from domain.facts import CustomerRecord
from domain.money import fmt
from domain.orders import (
    Address,
    AmendIn,
    AmendRequest,
    AmendResult,
    OrderIn,
    OrderLineIn,
    StatusChange,
)
from domain.problems import Problem
from domain.routing import RoutingFacts, facts_to_json, route
from domain.scopes import MAX_FIRST_ORDERS
from domain.status import OrderStatus

# What the assessment reads of an order and its customer, in one row (no ORM objects: the
# hot path of every order).
_ASSESSED = (
    select(
        Order.id,
        Order.customer_code,
        Order.channel,
        Order.total,
        Order.special_instructions,
        Order.created_at,
        Customer.code,
        Customer.tier,
        Customer.status,
        Customer.credit_limit,
    )
    .join(Customer, Customer.code == Order.customer_code)
    .where(Order.id == bindparam("order_id"))
)
_ROUTING_FACTS = (
    update(Order)
    .where(Order.id == bindparam("order_id"))
    .values(routing_facts=bindparam("facts", type_=Order.routing_facts.type))
)


class AssessmentActivities(DbActivities):
    @activity.defn(name="intake.assess_order")
    async def assess_order(self, ref: AssessRequest) -> Assessment:
        """Credit check and routing; marks the order validated (and approved when touchless)."""
        today = datetime.now(UTC).date()
        async with self.tx() as s:
            # One row serves as both the order and its customer (_route reads the columns).
            order = customer = (await s.execute(_ASSESSED, {"order_id": ref.order_id})).one()
            if customer.status != "active":
                problem = Problem(
                    loc=["customer_code"],
                    code="customer_on_hold"
                    if customer.status == "on_hold"
                    else "customer_inactive",
                    message=f"customer {customer.code} is {customer.status}",
                )
                return Assessment(ok=False, problems=[problem], total=order.total)
            verdict, levels = await _route(
                s, order, customer, ref.routing, ref.overdue_grace_days, today
            )
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=order.id,
                    status=OrderStatus.VALIDATED,
                    step_key="validated",
                    detail=f"exposure {fmt(verdict.exposure)} of limit "
                    f"{fmt(customer.credit_limit)}",
                ),
            )
            if not levels:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=order.id,
                        status=OrderStatus.APPROVED,
                        step_key="approved",
                        detail="first-pass: no approval rule applies",
                    ),
                )
            return Assessment(ok=True, levels=levels, total=order.total)

    @activity.defn(name="intake.amend_order")
    async def amend_order(self, req: AmendRequest) -> AmendResult:
        """Apply an amendment: new lines are re-validated and re-priced like a new order, and
        the order re-routed for approval. Refused (nothing written) when anything is wrong.
        Idempotent by the amendment id: a retry reports what the first attempt did."""
        today = datetime.now(UTC).date()
        change = req.change
        key = f"amended:{req.amend_id}"
        async with self.tx() as s:
            order = await s.get_one(Order, req.order_id, with_for_update=True)
            customer = await s.get_one(Customer, order.customer_code)
            done = await s.scalar(
                select(OrderEvent.detail).where(
                    OrderEvent.order_id == order.id, OrderEvent.step_key == key
                )
            )
            summary = done or ""
            if done is None:
                problems, changes = await _apply(s, order, change, today)
                if problems:  # found before anything was written
                    return AmendResult(ok=False, problems=problems)
                summary = "; ".join(changes) + (f" ({change.comment})" if change.comment else "")
                await repo.record_event(
                    s,
                    order.id,
                    key,
                    status=None,
                    kind="amendment",
                    actor=req.by,
                    detail=f"amended by {req.by}: {summary}",
                )
            levels: list[ApprovalLevel] = []
            if change.lines is not None:
                _, levels = await _route(
                    s, order, customer, req.routing, req.overdue_grace_days, today
                )
            return AmendResult(
                ok=True,
                summary=summary,
                lines_changed=change.lines is not None,
                total=order.total,
                levels=levels,
            )


async def _route(
    s: AsyncSession,
    order: Order | Row[*tuple[Any, ...]],
    customer: Customer | Row[*tuple[Any, ...]],
    routing: list[RoutingRule],
    grace_days: int,
    today: date,
) -> tuple[CreditVerdict, list[ApprovalLevel]]:
    """Credit check and approval routing of an order as it stands."""
    lines = (
        await s.execute(
            select(
                OrderLine.line_no,
                OrderLine.sku,
                OrderLine.unit_price,
                OrderLine.below_floor,
                OrderLine.discount_beyond_max,
            ).where(OrderLine.order_id == order.id)
        )
    ).all()
    credit = await repo.load_credit(s, customer.code, today, exclude_order=order.id)
    verdict = assess_credit(customer.credit_limit, credit, order.total, grace_days)
    reasons = {
        "credit_over_limit": (verdict.over_limit,) if verdict.over_limit else (),
        "receivable_overdue": (verdict.overdue,) if verdict.overdue else (),
        "price_below_floor": tuple(
            f"line {ln.line_no} {ln.sku} at {fmt(ln.unit_price)} below floor price"
            for ln in lines
            if ln.below_floor
        ),
        "discount_beyond_max": tuple(
            f"line {ln.line_no} {ln.sku} at {fmt(ln.unit_price)} beyond the tier's maximum discount"
            for ln in lines
            if ln.discount_beyond_max
        ),
        "special_instructions": ("special instructions present",)
        if order.special_instructions
        else (),
    }
    facts = RoutingFacts(
        total=order.total,
        reasons=reasons,
        customer=await _customer_record(s, order, customer.tier, today),
    )
    # Kept for the rules' dry run; an idempotent overwrite (a retry computes the same).
    await s.execute(_ROUTING_FACTS, {"order_id": order.id, "facts": facts_to_json(facts)})
    return verdict, route(facts, routing)


# What rule scopes read of a customer (_customer_record): its orders before this one, counted
# up to the largest "first N orders" a scope may name (by ix_orders_customer_created), the
# first one's date, and the last day a payment was late (paid after its due date, or still
# open past it: today).
_RECORD = text(
    """
SELECT count(*), min(earlier.created_at),
    (SELECT max(CASE
                WHEN r.paid_at > r.due_date THEN r.paid_at
                WHEN r.paid_at IS NULL AND r.open_amount > 0 AND r.due_date < CAST(:today AS date)
                THEN CAST(:today AS date)
            END)
     FROM receivables r WHERE r.customer_code = :customer)
FROM (SELECT created_at FROM orders
      WHERE customer_code = :customer AND created_at < :created
      ORDER BY created_at LIMIT :first) earlier
"""
)


async def _customer_record(
    s: AsyncSession, order: Order | Row[*tuple[Any, ...]], tier: str, today: date
) -> CustomerRecord:
    """What rule scopes read, in one round trip: the customer's orders before this one
    (counted up to the largest "first N orders" a scope may name, by
    ix_orders_customer_created) and the last day a payment was late."""
    row = (
        await s.execute(
            _RECORD,
            {
                "customer": order.customer_code,
                "created": order.created_at,
                "first": MAX_FIRST_ORDERS,
                "today": today,
            },
        )
    ).one()
    return CustomerRecord(
        tier=tier,
        channel=order.channel,
        prior_orders=row[0],
        first_order_on=row[1].date() if row[1] is not None else None,
        last_late_payment_on=row[2],
        as_of=today,
    )


async def _apply(
    s: AsyncSession, order: Order, change: AmendIn, today: date
) -> tuple[list[Problem], list[str]]:
    """Write the amendment to the order; answers (problems, what changed in words)."""
    changes: list[str] = []
    if change.requested_delivery_date is not None and change.requested_delivery_date < today:
        problem = Problem(
            loc=["requested_delivery_date"],
            code="date_in_past",
            message=f"requested delivery date {change.requested_delivery_date} is before "
            f"today ({today})",
        )
        return [problem], changes
    if change.lines is not None:
        old = (
            await s.scalars(
                select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.line_no)
            )
        ).all()
        if any(ln.reserved_qty or ln.shipped_qty for ln in old):
            problem = Problem(
                loc=["lines"],
                code="already_reserved",
                message=f"order {order.id} has stock reserved: only ship_to and "
                "requested_delivery_date can change now",
            )
            return [problem], changes
        draft = OrderIn(
            customer_code=order.customer_code,
            channel=order.channel,
            lines=change.lines,
            ship_to=change.ship_to or Address(**order.ship_to),
            requested_delivery_date=change.requested_delivery_date,
        )
        q = await quote(s, draft, today)
        if q.problems:
            return q.problems, changes
        assert q.priced is not None
        changes += _line_changes({ln.sku: ln.quantity for ln in old}, change.lines)
        changes.append(f"total {fmt(order.total)} -> {fmt(q.priced.total)}")
        await s.execute(delete(OrderLine).where(OrderLine.order_id == order.id))
        s.add_all(line_rows(order.id, q.priced))
        order.subtotal = q.priced.subtotal
        order.order_discount = q.priced.order_discount
        order.total = q.priced.total
        order.price_rules_version = q.rules_label
    if change.ship_to is not None:
        order.ship_to = change.ship_to.model_dump()
        a = change.ship_to
        changes.append(f"ship-to {a.line1}, {a.postal_code} {a.city}, {a.country}")
    if change.requested_delivery_date is not None:
        changes.append(
            f"requested delivery date {order.requested_delivery_date} -> "
            f"{change.requested_delivery_date}"
        )
        order.requested_delivery_date = change.requested_delivery_date
    order.updated_at = func.now()
    return [], changes


def _line_changes(old: dict[str, int], new: list[OrderLineIn]) -> list[str]:
    wanted = {ln.sku: ln.quantity for ln in new}
    out = [f"removed {sku}" for sku in old if sku not in wanted]
    for sku, qty in wanted.items():
        if sku not in old:
            out.append(f"added {sku} x{qty}")
        elif old[sku] != qty:
            out.append(f"{sku} {old[sku]} -> {qty}")
    return out or ["lines unchanged"]
