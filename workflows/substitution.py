"""Substitution: a backordered order takes a substitute for a short (or disrupted) SKU in
one call, and goes straight back to reservation with it.

The backorder loop (workflows/fulfilment.py `_reserve`) parks between two reservations; a
substitution is taken only while it is parked, and holds it there until the lines are
changed: a reservation never runs beside the step that rewrites the lines it reserves.
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.amendment import Amendments
from workflows.context import OrderContext
from workflows.fulfilment import Fulfilment
from workflows.policies import DB_RETRY, DB_TIMEOUT
from workflows.text import one_line

with workflow.unsafe.imports_passed_through():
    from activities.substitution import SubstitutionActivities
    from domain.status import OrderStatus, can_cancel
    from domain.substitution import SubstituteRequest, SubstituteResult, Substitution


class Substitutions:
    """Takes `substitute` Updates; one at a time, and never beside an amendment."""

    def __init__(self, ctx: OrderContext, amendments: Amendments, fulfilment: Fulfilment) -> None:
        self.ctx = ctx
        self.amendments = amendments
        self.fulfilment = fulfilment
        self.busy = False
        # The total the credit check and approvals covered: the order's total when its
        # first substitution came (substitutions never raise it above that).
        self.covered: Decimal | None = None

    def problem(self, sub: Substitution) -> ApplicationError | None:
        """Why the order cannot take this substitution now (None: it can). What the data
        says (the SKU is on the order, the substitute is listed) the activity checks."""
        ctx = self.ctx
        if not ctx.started:
            return ApplicationError("the order is starting; retry in a moment", type="NotReady")
        if ctx.finished or ctx.cancel_request is not None or not can_cancel(ctx.status):
            return ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: it can no longer be amended",
                type="NotAmendable",
            )
        if ctx.status is not OrderStatus.BACKORDERED:
            return ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: its stock is reserved, so its "
                "lines no longer change (a substitute is taken before reservation or while "
                "the order is backordered)",
                type="NotAmendable",
            )
        busy = self.amendments.busy()
        if busy is not None:
            return busy
        if self.busy:
            return ApplicationError(
                f"order {ctx.order_id} has a substitution in progress; try again in a moment",
                type="AmendmentInProgress",
            )
        if not self.fulfilment.parked:
            # Between two steps of the backorder loop (checking stock, raising an alert).
            return ApplicationError(
                f"order {ctx.order_id} is checking its stock; try again in a moment",
                type="NotReady",
            )
        return None

    async def apply(self, sub: Substitution) -> SubstituteResult:
        """Change the lines (one local activity), then wake the backorder loop so the order
        reserves again at once; answers once that reservation has run."""
        ctx, fulfilment = self.ctx, self.fulfilment
        # The loop may have left its wait in this same activation: checked again.
        problem = self.problem(sub)
        if problem is not None:
            raise problem
        # ctx.amending: an amendment waits for the substitution, as it does for another.
        self.busy = ctx.amending = True
        fulfilment.held = True
        if self.covered is None:
            self.covered = ctx.total
        ctx.show()
        try:
            result = await workflow.execute_local_activity_method(
                SubstitutionActivities.substitute_line,
                SubstituteRequest(
                    order_id=ctx.order_id,
                    key=f"substituted:{workflow.uuid4()}",
                    sku=sub.sku,
                    substitute=sub.substitute,
                    by=sub.by,
                    covered_total=self.covered,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=one_line(f"substitute {sub.substitute} for {sub.sku} (by {sub.by})"),
            )
        finally:
            self.busy = ctx.amending = False
            fulfilment.held = False
        if result.problems:
            raise ApplicationError(
                "the substitution is invalid: " + "; ".join(p.message for p in result.problems),
                [p.model_dump() for p in result.problems],
                type="InvalidAmendment",
            )
        if result.refused is not None:
            raise ApplicationError(result.refused, type="SubstitutionRefused")
        ctx.amendments += 1
        ctx.total = result.total
        # As the stock_replenished signal does: the loop reserves again, with the new lines.
        fulfilment.replenished = True
        await workflow.wait_condition(lambda: not fulfilment.parked or ctx.finished)
        await workflow.wait_condition(
            lambda: fulfilment.parked or ctx.status is not OrderStatus.BACKORDERED or ctx.finished
        )
        return result
