"""Amendments: lines change until stock is reserved (re-validated, re-priced, re-routed),
ship-to and requested date until the order ships; one at a time."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.approval import ApprovalChain
from workflows.context import OrderContext
from workflows.policies import DB_RETRY, DB_TIMEOUT
from workflows.text import one_line

with workflow.unsafe.imports_passed_through():
    from activities.assessment import AssessmentActivities
    from domain.orders import Amendment, AmendRequest
    from domain.status import LINES_AMENDABLE, can_cancel


class Amendments:
    """Takes an amendment to the order; its new approval chain is the approval stage's."""

    def __init__(self, ctx: OrderContext, approval: ApprovalChain) -> None:
        self.ctx = ctx
        self.approval = approval

    def busy(self) -> ApplicationError | None:
        """Another amendment (or a decision) is still being applied."""
        ctx = self.ctx
        if ctx.amending or ctx.settling or self.approval.decision is not None:
            return ApplicationError(
                f"order {ctx.order_id} has an amendment in progress; try again in a moment",
                type="AmendmentInProgress",
            )
        return None

    def problem(self, a: Amendment) -> ApplicationError | None:
        """Why the order cannot take this amendment now (None: it can)."""
        ctx = self.ctx
        if not ctx.started:  # the Update came with the workflow's very first task
            return ApplicationError("the order is starting; retry in a moment", type="NotReady")
        if ctx.finished or ctx.cancel_request is not None or not can_cancel(ctx.status):
            return ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: it can no longer be amended",
                type="NotAmendable",
            )
        if a.change.lines is not None and (ctx.lines_locked or ctx.status not in LINES_AMENDABLE):
            return ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: stock is being reserved, so "
                "only ship_to and requested_delivery_date can change",
                type="NotAmendable",
            )
        return None

    async def apply(self, a: Amendment) -> None:
        """Validate, price and route the amended order again (one local activity); changed
        lines send it back through the approvals it is not yet covered for."""
        ctx = self.ctx
        ctx.amending = True
        try:
            problem = self.problem(a)  # the order may have moved since validation
            if problem is not None:
                raise problem
            ctx.show()
            result = await workflow.execute_local_activity_method(
                AssessmentActivities.amend_order,
                AmendRequest(
                    order_id=ctx.order_id,
                    amend_id=str(workflow.uuid4()),
                    by=a.by,
                    change=a.change,
                    routing=ctx.inp.routing,
                    overdue_grace_days=ctx.inp.overdue_grace_days,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=one_line(f"amend by {a.by}: validate, price and route again"),
            )
            if not result.ok:
                raise ApplicationError(
                    "the amendment is invalid: " + "; ".join(p.message for p in result.problems),
                    [p.model_dump() for p in result.problems],
                    type="InvalidAmendment",
                )
            ctx.amendments += 1
            if result.lines_changed:
                ctx.line_count = len(a.change.lines or [])
                ctx.total = result.total
                self.approval.reroute = self.approval.uncovered(result.levels)
                ctx.settling = True
        finally:
            ctx.amending = False
