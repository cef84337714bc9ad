"""ReturnWorkflow: one durable workflow per return (RMA), linked to its order by id.

`run()` is the life of one return: approval (by rule, or a person within a timeout), the
goods received and inspected, the credit note; a credit that fails for good undoes the
restock (compensation) and cancels the return. Every step only touches PostgreSQL, so each
is a local activity (one marker event, no trip through the matching service).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.policies import COMPENSATION_RETRY, DB_RETRY, DB_TIMEOUT

with workflow.unsafe.imports_passed_through():
    from activities.returns import ReturnActivities
    from domain.returns import (
        Receipt,
        ReturnDecision,
        ReturnState,
        ReturnStatus,
        ReturnStep,
        ReturnWorkflowInput,
        RmaRef,
        approval_reason,
        receipt_problems,
    )

A = TypeVar("A")
R = TypeVar("R")


def return_workflow_id(rma_id: str) -> str:
    """The one workflow of a return."""
    return f"return-{rma_id}"


@workflow.defn(name="ReturnWorkflow")
class ReturnWorkflow:
    @workflow.init
    def __init__(self, inp: ReturnWorkflowInput) -> None:
        self.inp = inp
        self.ref = RmaRef(rma_id=inp.rma_id, order_id=inp.order_id)
        self.status = ReturnStatus.REQUESTED
        self.awaiting_role: str | None = None
        self.decision: ReturnDecision | None = None
        self.receipt: Receipt | None = None
        self.credit_notes: list[str] = []
        self.failure: str | None = None

    @workflow.run
    async def run(self, inp: ReturnWorkflowInput) -> ReturnState:
        if await self._approved():
            await self._receive_and_credit()
        # Let an in-flight decide/receive Update return its answer before the run ends.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    # ---- the stages ---------------------------------------------------------------------

    async def _approved(self) -> bool:
        """Within N days and under the amount: approved by rule; otherwise the policy's role
        decides before the timeout, and no decision refuses the return."""
        inp = self.inp
        why = approval_reason(inp)
        if why is None:
            await self._move(
                ReturnStatus.APPROVED,
                f"approved by rule ({inp.days_since} days, amount {inp.amount})",
            )
            return True
        role = inp.policy.role
        await self._move(
            ReturnStatus.AWAITING_APPROVAL, why, awaiting_role=role, approval_reason=why
        )
        # A durable timer: the return waits for its approver this long, then is refused.
        decided = await self._wait(
            lambda: self.decision is not None,
            inp.policy.approval_timeout_seconds,
        )
        d = self.decision
        if not decided or d is None:
            await self._move(ReturnStatus.REFUSED, "no decision before the approval timeout")
            return False
        if d.decision == "reject":
            await self._move(
                ReturnStatus.REFUSED, f"refused by {d.by} ({d.role})", actor=d.by, comment=d.comment
            )
            return False
        await self._move(
            ReturnStatus.APPROVED, f"approved by {d.by} ({d.role})", actor=d.by, comment=d.comment
        )
        return True

    async def _receive_and_credit(self) -> None:
        """Wait for the goods (until the receive timeout), then credit what came back."""
        if not await self._wait(
            lambda: self.receipt is not None, self.inp.policy.receive_timeout_seconds
        ):
            await self._move(
                ReturnStatus.CANCELLED,
                "the goods did not arrive before the receive timeout",
                comment="goods not received in time",
            )
            return
        receipt = self.receipt
        assert receipt is not None
        await self._local(ReturnActivities.receive, receipt)
        self.status = ReturnStatus.RECEIVED
        try:
            self.credit_notes = await self._local(ReturnActivities.credit, self.ref)
        except (ActivityError, ApplicationError) as err:
            # The goods are back but no credit can be written: undo the restock (restocked
            # units go to quarantine) so stock and money tell the same story, then stop.
            # (A local activity's business error can arrive as the ApplicationError itself.)
            cause = err.cause if isinstance(err, ActivityError) else err
            self.failure = getattr(cause, "message", None) or str(err)
            await workflow.execute_local_activity_method(
                ReturnActivities.undo_receipt,
                self.ref,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=COMPENSATION_RETRY,
            )
            await self._move(
                ReturnStatus.CANCELLED, f"credit failed: {self.failure}", comment=self.failure
            )
            return
        self.status = ReturnStatus.CREDITED
        await self._move(ReturnStatus.COMPLETED, "")

    # ---- moves --------------------------------------------------------------------------

    async def _wait(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Wait for `ready` on a durable timer; False when the timer fired first."""
        try:
            await workflow.wait_condition(ready, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            return False
        return True

    async def _local(self, fn: Callable[[Any, A], Awaitable[R]], arg: A) -> R:
        result: R = await workflow.execute_local_activity_method(
            fn, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )
        return result

    async def _move(
        self,
        status: ReturnStatus,
        detail: str,
        *,
        actor: str = "system",
        comment: str | None = None,
        awaiting_role: str | None = None,
        approval_reason: str | None = None,
    ) -> None:
        step = ReturnStep(
            rma_id=self.inp.rma_id,
            order_id=self.inp.order_id,
            status=status,
            detail=detail,
            actor=actor,
            comment=comment,
            awaiting_role=awaiting_role,
            approval_reason=approval_reason,
        )
        await self._local(ReturnActivities.set_status, step)
        self.status = status
        self.awaiting_role = awaiting_role

    # ---- messages -----------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> ReturnState:
        return ReturnState(
            rma_id=self.inp.rma_id,
            order_id=self.inp.order_id,
            status=self.status,
            awaiting_role=self.awaiting_role,
            credit_notes=self.credit_notes,
            failure=self.failure,
        )

    @workflow.update(name="decide")
    async def decide(self, d: ReturnDecision) -> ReturnState:
        """An approver's decision; answers once the return moved on."""
        self.decision = d
        await workflow.wait_condition(lambda: self.status != ReturnStatus.AWAITING_APPROVAL)
        return self.state()

    @decide.validator
    def _validate_decide(self, d: ReturnDecision) -> None:
        if self.status != ReturnStatus.AWAITING_APPROVAL or self.decision is not None:
            raise ApplicationError(
                f"return {self.inp.rma_id} is {self.status.value}: nothing awaits a decision",
                type="NothingPending",
            )
        if d.role not in (self.awaiting_role, "admin"):
            raise ApplicationError(
                f"return {self.inp.rma_id} waits for role {self.awaiting_role}, not {d.role}",
                type="WrongRole",
            )

    @workflow.update(name="receive")
    async def receive(self, r: Receipt) -> ReturnState:
        """The goods arrived, inspected line by line; answers once credited (or stopped)."""
        self.receipt = r
        await workflow.wait_condition(
            lambda: (
                self.status
                in (ReturnStatus.COMPLETED, ReturnStatus.CANCELLED, ReturnStatus.REFUSED)
            )
        )
        return self.state()

    @receive.validator
    def _validate_receive(self, r: Receipt) -> None:
        if self.status != ReturnStatus.APPROVED or self.receipt is not None:
            raise ApplicationError(
                f"return {self.inp.rma_id} is {self.status.value}: it takes goods only once "
                "approved, and once",
                type="NothingPending",
            )
        problems = receipt_problems(self.inp.lines, r.lines)
        if problems:
            raise ApplicationError("; ".join(problems), type="InvalidReceipt")
