"""Intake: re-check the order inside the workflow, credit control and approval routing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from temporalio import activity

from orderflow.activities.base import DbActivities
from orderflow.db import repo
from orderflow.db.models import Customer, Order, OrderLine
from orderflow.domain.credit import assess_credit
from orderflow.domain.money import fmt
from orderflow.domain.payloads import Assessment, AssessRequest, Problem, StatusChange
from orderflow.domain.routing import RoutingFacts, route
from orderflow.domain.status import OrderStatus


class IntakeActivities(DbActivities):
    @activity.defn(name="intake.assess_order")
    async def assess_order(self, ref: AssessRequest) -> Assessment:
        """Credit check and routing; marks the order validated (and approved when touchless)."""
        today = datetime.now(UTC).date()
        async with self.tx() as s:
            order = await s.get_one(Order, ref.order_id)
            customer = await s.get_one(Customer, order.customer_code)
            if customer.status != "active":
                problem = Problem(
                    loc=["customer_code"],
                    code="customer_on_hold"
                    if customer.status == "on_hold"
                    else "customer_inactive",
                    message=f"customer {customer.code} is {customer.status}",
                )
                return Assessment(ok=False, problems=[problem], total=order.total)
            lines = (await s.scalars(select(OrderLine).where(OrderLine.order_id == order.id))).all()
            credit = await repo.load_credit(s, customer.code, today, exclude_order=order.id)
            verdict = assess_credit(
                customer.credit_limit, credit, order.total, ref.overdue_grace_days
            )
            reasons = {
                "credit_over_limit": (verdict.over_limit,) if verdict.over_limit else (),
                "receivable_overdue": (verdict.overdue,) if verdict.overdue else (),
                "price_below_floor": tuple(
                    f"line {ln.line_no} {ln.sku} at {fmt(ln.unit_price)} below floor price"
                    for ln in lines
                    if ln.below_floor
                ),
                "discount_beyond_max": tuple(
                    f"line {ln.line_no} {ln.sku} at {fmt(ln.unit_price)} beyond the tier's "
                    "maximum discount"
                    for ln in lines
                    if ln.discount_beyond_max
                ),
                "special_instructions": ("special instructions present",)
                if order.special_instructions
                else (),
            }
            levels = route(RoutingFacts(total=order.total, reasons=reasons), ref.routing)
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
