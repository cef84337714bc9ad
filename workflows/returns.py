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

from workflows.policies import (
    COMPENSATION_RETRY,
    DB_RETRY,
    DB_TIMEOUT,
    NOTIFY_RETRY,
    NOTIFY_TIMEOUT,
)

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.returns import ReturnActivities
    from domain.alerts import Notice
    from domain.returns import (
        RETURN_FINAL,
        Receipt,
        ReturnCancel,
        ReturnDecision,
        ReturnState,
        ReturnStatus,
        ReturnStep,
        ReturnWorkflowInput,
        RmaRef,
        approval_reason,
        receipt_problems,
    )

# Patch ids: paths added after returns were in flight (their histories replay without them).
REMINDER_PATCH = "return-reminder"

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
        self.cancel_request: ReturnCancel | None = None
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
        decided = await self._wait_for_approver(role)
        if self.cancel_request is not None:
            await self._cancelled()
            return False
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

    async def _wait_for_approver(self, role: str) -> bool:
        """Wait for a decision (or a cancel) until the approval timeout; one reminder to the
        role part-way, for returns started since reminders exist (`REMINDER_PATCH`)."""
        p = self.inp.policy

        def ready() -> bool:
            return self.decision is not None or self.cancel_request is not None

        remind = p.reminder_seconds
        if remind is None or remind >= p.approval_timeout_seconds:
            return await self._wait(ready, p.approval_timeout_seconds)
        if not workflow.patched(REMINDER_PATCH):
            return await self._wait(ready, p.approval_timeout_seconds)
        if await self._wait(ready, remind):
            return True
        await self._remind(role)
        return await self._wait(ready, p.approval_timeout_seconds - remind)

    async def _remind(self, role: str) -> None:
        """Tell the approver role once (the order approvals' notify_role: webhook, e-mail or
        the log). A normal activity: the outside world, retried; a failure never refuses
        the return, so it is noted and the wait goes on."""
        inp = self.inp
        subject = (
            f"Reminder: return {inp.rma_id} of order {inp.order_id} ({inp.amount}) waits for "
            f"a {role} decision"
        )
        notice = Notice(
            dedup_key=f"{inp.order_id}:return:{inp.rma_id}:reminder",
            role=role,
            order_id=inp.order_id,
            subject=subject,
            body=(
                f"Return {inp.rma_id} needs a decision: {approval_reason(inp)}. Decide with "
                f"POST /returns/{inp.rma_id}/decision; without one it is refused at the timeout."
            ),
        )
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify_role,
                notice,
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
            )
            note = f"reminder sent to {role}"
        except ActivityError as err:
            note = f"reminder to {role} could not be delivered: {err.cause or err}"
        await self._local(
            ReturnActivities.note,
            ReturnStep(
                rma_id=inp.rma_id,
                order_id=inp.order_id,
                status=self.status,
                detail=note,
                awaiting_role=role,
            ),
        )

    async def _cancelled(self) -> None:
        c = self.cancel_request
        assert c is not None
        await self._move(
            ReturnStatus.CANCELLED,
            f"cancelled by {c.by} ({c.role}) before the goods arrived: {c.reason}",
            actor=c.by,
            comment=c.reason,
        )

    async def _receive_and_credit(self) -> None:
        """Wait for the goods (until the receive timeout), then credit what came back."""
        if not await self._wait(
            lambda: self.receipt is not None or self.cancel_request is not None,
            self.inp.policy.receive_timeout_seconds,
        ):
            await self._move(
                ReturnStatus.CANCELLED,
                "the goods did not arrive before the receive timeout",
                comment="goods not received in time",
            )
            return
        if self.cancel_request is not None and self.receipt is None:
            await self._cancelled()  # nothing has happened yet that needs undoing
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
        if (
            self.status != ReturnStatus.AWAITING_APPROVAL
            or self.decision is not None
            or self.cancel_request is not None
        ):
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
        if (
            self.status != ReturnStatus.APPROVED
            or self.receipt is not None
            or self.cancel_request is not None
        ):
            raise ApplicationError(
                f"return {self.inp.rma_id} is {self.status.value}: it takes goods only once "
                "approved, and once",
                type="NothingPending",
            )
        problems = receipt_problems(self.inp.lines, r.lines)
        if problems:
            raise ApplicationError("; ".join(problems), type="InvalidReceipt")

    @workflow.update(name="cancel")
    async def cancel(self, c: ReturnCancel) -> ReturnState:
        """Withdraw a return before its goods arrive; answers once it is `cancelled`."""
        self.cancel_request = c
        # Any end: the approval timer may have begun refusing it just before the cancel came.
        await workflow.wait_condition(lambda: self.status in RETURN_FINAL)
        if self.status != ReturnStatus.CANCELLED:
            raise ApplicationError(
                f"return {self.inp.rma_id} ended {self.status.value} before the cancel took effect",
                type="NothingPending",
            )
        return self.state()

    @cancel.validator
    def _validate_cancel(self, c: ReturnCancel) -> None:
        open_ = (ReturnStatus.AWAITING_APPROVAL, ReturnStatus.APPROVED)
        deciding = self.status == ReturnStatus.AWAITING_APPROVAL and self.decision is not None
        if (
            self.status not in open_
            or self.receipt is not None
            or deciding
            or self.cancel_request is not None
        ):
            raise ApplicationError(
                f"return {self.inp.rma_id} is {self.status.value}: only a return whose goods "
                "have not been received (awaiting approval or approved) can be cancelled",
                type="NothingPending",
            )
