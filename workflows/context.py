"""What the order's stages share: the state the Temporal UI and the API can see, and the
moves every stage makes (run a step, wait, write a note, raise an alert, change the status).

The workflow owns one `OrderContext` and hands it to its stages (approval, fulfilment,
delivery, compensation); none of them knows the workflow class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from temporalio import activity, workflow
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.details import current_details
from workflows.policies import (
    CARRIER_HEARTBEAT,
    CARRIER_RETRY,
    CARRIER_TIMEOUT,
    COMPENSATION_RETRY,
    DB_RETRY,
    DB_TIMEOUT,
    NOTIFY_RETRY,
    NOTIFY_TIMEOUT,
)
from workflows.text import one_line, plural

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from activities.orders import OrderActivities
    from domain.alerts import Alert, Notice
    from domain.approvals import DecisionRecord
    from domain.orders import CancelRequest, OrderWorkflowInput, StatusChange
    from domain.search_attributes import AWAITING_ROLE, STATUS
    from domain.status import OrderStatus, can_move
    from workflows.alert import AlertWorkflow, alert_workflow_id

A = TypeVar("A")
R = TypeVar("R")
# An activity method, called by reference: `FulfilActivities.first_pass`.
Step = Callable[[Any, A], Awaitable[R]]


class OrderStopped(Exception):
    """The order leaves the happy path: rejected, cancelled or failed."""

    def __init__(self, status: OrderStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Rerouted(Exception):
    """An amendment changed which approvals the order needs: route it again."""


class IllegalTransition(RuntimeError):
    """A status change domain/status.py does not allow: a bug, so the workflow task fails
    (and retries once the code is fixed) instead of the order."""


def activity_name(fn: Callable[..., Any]) -> str:
    """The registered name of an activity method (`fulfil.first_pass`)."""
    # The SDK reads the name the same way when it schedules the call.
    return activity._Definition.must_from_callable(fn).name or fn.__name__


def step_failed(name: str, err: ActivityError) -> OrderStopped:
    """A step that failed for good fails the order, saying which step and why."""
    message = getattr(err.cause, "message", None) or str(err.cause or err)
    return OrderStopped(OrderStatus.FAILED, f"step {name} failed: {message}")


class OrderContext:
    """One order's shared state and the moves its stages make."""

    def __init__(self, inp: OrderWorkflowInput) -> None:
        self.inp = inp
        self.order_id = inp.order_id
        self.status = OrderStatus.RECEIVED
        self.awaiting_role: str | None = None
        self.pending_level: int | None = None
        self.approvals: list[DecisionRecord] = []
        self.total: Decimal | None = None
        self.line_count = inp.lines
        self.cancel_request: CancelRequest | None = None
        self.notes: list[str] = []
        self.failure: str | None = None
        # run() has begun: an Update can come with the workflow's very first task, before it.
        self.started = False
        self.finished = False
        # Steps combined in one local activity (see activities/fulfil.py), for orders
        # started since they exist.
        self.combined = False
        # Amendments: one at a time; lines only until reservation starts.
        self.amending = False
        self.settling = False
        self.amendments = 0
        self.lines_locked = False
        # What holds the order up, for the API's state and the UI's current details.
        self.shipping_held: str | None = None
        self.remainder_cancelled: str | None = None
        self.exception_on: str | None = None
        self.short: str | None = None
        # The step running, the timer waited on (summary, fires at), the SLA timers after it.
        self.step: str | None = None
        self.timer: tuple[str, datetime] | None = None
        self.sla_later: list[str] = []
        # Notices to approvers run beside the order; awaited before it ends.
        self.outbound: list[workflow.ActivityHandle[None]] = []
        self._published: tuple[str, str | None] = (OrderStatus.RECEIVED.value, None)

    # ---- the status -------------------------------------------------------------------

    def moved(
        self, status: OrderStatus, awaiting_role: str | None = None, level: int | None = None
    ) -> None:
        """Follow a status in the workflow state, if domain/status.py allows the move; the
        search attributes follow at the next point where the workflow waits (see publish)."""
        if not can_move(self.status, status):
            raise IllegalTransition(
                f"order {self.order_id}: {self.status.value} cannot move to {status.value}"
            )
        self.status = status
        self.awaiting_role = awaiting_role
        self.pending_level = level

    def change(self, status: OrderStatus, key: str, detail: str) -> StatusChange:
        return StatusChange(order_id=self.order_id, status=status, step_key=key, detail=detail)

    def completion(self) -> StatusChange:
        return self.change(OrderStatus.COMPLETED, "completed", "order complete")

    async def end(self, stop: OrderStopped) -> None:
        """Write the order's end (it must land: retried like a compensation) and follow it."""
        await workflow.execute_local_activity_method(
            OrderActivities.set_status,
            self.change(stop.status, stop.status.value, stop.reason),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=COMPENSATION_RETRY,
            summary=one_line(f"status: {stop.status.value} ({stop.reason})"),
        )
        self.moved(stop.status)

    def checkpoint(self) -> None:
        """Stop here if a cancel was asked for."""
        if self.cancel_request is not None:
            req = self.cancel_request
            raise OrderStopped(
                OrderStatus.CANCELLED,
                f"cancelled by {req.by}" + (f": {req.reason}" if req.reason else ""),
            )

    def lines(self) -> str:
        """'3 lines' ('the lines' for orders started before the count came with them)."""
        return plural(self.line_count, "line") if self.line_count else "the lines"

    # ---- what the Temporal UI shows -----------------------------------------------------

    def show(self) -> None:
        """Keep the order's current details (Temporal UI, workflow page) up to date."""
        workflow.set_current_details(current_details(self))

    def publish(self) -> None:
        """Upsert the search attributes if they changed. Called wherever the workflow task
        can end (before waiting, before a normal activity, at the end): steps run as local
        activities within one task, so one upsert per task keeps the UI exact at every point
        it can observe, for a third of the history events. The current details follow at
        the same points (they are no command: a query reads them)."""
        self.show()
        current = (self.status.value, self.awaiting_role)
        if current == self._published:
            return
        self._published = current
        workflow.upsert_search_attributes(
            [
                STATUS.value_set(self.status.value),
                AWAITING_ROLE.value_set(self.awaiting_role)
                if self.awaiting_role
                else AWAITING_ROLE.value_unset(),
            ]
        )

    # ---- steps ----------------------------------------------------------------------------

    async def local(self, fn: Step[A, R], arg: A, *, summary: str) -> R:
        """A PostgreSQL-only step as a local activity: one marker event instead of three
        and a trip through the matching service. A failure for good fails the order."""
        summary = one_line(summary)
        self.step = summary
        self.show()
        try:
            result: R = await workflow.execute_local_activity_method(
                fn,
                arg,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=summary,
            )
            return result
        except ActivityError as err:
            raise step_failed(activity_name(fn), err) from err
        finally:
            self.step = None

    async def carrier(self, fn: Step[A, R], arg: A, *, summary: str) -> R:
        """A call to the carrier (the outside world): a normal activity with heartbeats."""
        summary = one_line(summary)
        self.step = summary
        self.publish()
        try:
            result: R = await workflow.execute_activity_method(
                fn,
                arg,
                summary=summary,
                start_to_close_timeout=CARRIER_TIMEOUT,
                heartbeat_timeout=CARRIER_HEARTBEAT,
                retry_policy=CARRIER_RETRY,
            )
            return result
        except ActivityError as err:
            raise step_failed(activity_name(fn), err) from err
        finally:
            self.step = None

    async def wait(
        self,
        ready: Callable[[], bool],
        within: timedelta,
        cancellable: bool = True,
        *,
        timer: str,
    ) -> bool:
        """Wait for `ready` or the timeout; a cancel request interrupts; notes get written.
        `timer` says what happens when it fires (the timer's summary in the Temporal UI)."""

        def woken() -> bool:
            return ready() or bool(self.notes) or (cancellable and self.cancel_request is not None)

        timer = one_line(timer)
        deadline = workflow.now() + within
        while True:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                return bool(ready())
            self.timer = (timer, deadline)
            self.publish()
            try:
                await workflow.wait_condition(woken, timeout=remaining, timeout_summary=timer)
            except TimeoutError:
                return bool(ready())
            finally:
                self.timer = None
            await self.flush_notes()
            if cancellable:
                self.checkpoint()
            if ready():
                return True

    # ---- the timeline, alerts and notices --------------------------------------------------

    async def note(self, step_key: str, detail: str) -> None:
        """A timeline entry that does not change the status."""
        await self.local(
            OrderActivities.note,
            StatusChange(
                order_id=self.order_id, status=self.status, step_key=step_key, detail=detail
            ),
            summary=f"timeline: {detail}",
        )

    async def flush_notes(self) -> None:
        while self.notes:
            note = self.notes.pop(0)
            await self.note(f"note:{workflow.uuid4()}", note)

    async def alert(self, kind: str, severity: str, summary: str, key: str | None = None) -> None:
        """Raise an on-call alert. It lives in its own workflow (id = dedup key), so it is
        stored and delivered once even if this order finishes first."""
        alert = Alert(
            dedup_key=f"{self.order_id}:{key or kind}",
            kind=kind,
            severity=severity,  # type: ignore[arg-type]  # the callers pass the literals
            order_id=self.order_id,
            summary=summary,
        )
        self.publish()
        try:
            await workflow.start_child_workflow(
                AlertWorkflow.run,
                alert,
                id=alert_workflow_id(alert.dedup_key),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=one_line(f"{severity} alert {kind}: {summary}"),
            )
        except WorkflowAlreadyStartedError:
            pass  # raised before (e.g. by a retried step): one alert, not two
        await self.note(f"alert:{alert.dedup_key}", f"alert raised: {summary}")

    async def notify(self, role: str, subject: str, key: str) -> None:
        """Tell a role's people (mail, webhook) beside the order: a slow receiver never
        holds it up; drain_outbound awaits the deliveries before the order ends."""
        notice = Notice(
            dedup_key=f"{self.order_id}:{key}", role=role, order_id=self.order_id, subject=subject
        )
        self.outbound.append(
            workflow.start_activity_method(
                NotifyActivities.notify_role,
                notice,
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=one_line(f"notify {role}: {subject}"),
            )
        )
        await self.note(f"notice:{key}", subject)

    async def drain_outbound(self) -> None:
        """Let notices finish delivering; a failed delivery never fails the order."""
        self.publish()
        for handle in self.outbound:
            try:
                await handle
            except ActivityError as err:
                await self.note(
                    f"note:{workflow.uuid4()}", f"outbound delivery gave up: {err.cause or err}"
                )
        self.outbound.clear()
