"""OrderWorkflow: one durable workflow per order, orchestration only.

Steps that only touch PostgreSQL are local activities: they cost one marker event each
instead of three events and a round trip through the matching service. The carrier is the
outside world, so booking and tracking are normal activities with heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.payloads import (
        Alert,
        Amendment,
        AmendRequest,
        AmendResult,
        ApprovalLevel,
        Assessment,
        AssessRequest,
        Booking,
        CancelRequest,
        Compensation,
        Decision,
        DecisionRecord,
        DeliveryClose,
        DeliveryEvent,
        ExceptionDecision,
        FirstPass,
        FirstPassRequest,
        Notice,
        OrderRef,
        OrderState,
        OrderWorkflowInput,
        PackResult,
        Prepared,
        PrepareRequest,
        ReserveResult,
        ShipmentLoss,
        ShipmentRecord,
        ShipmentRequest,
        StatusChange,
        TrackRequest,
        TrackResult,
    )
    from domain.search_attributes import AWAITING_ROLE, STATUS
    from domain.status import (
        FINAL_STATUSES,
        LINES_AMENDABLE,
        SHIPPED_OR_LATER,
        OrderStatus,
        can_cancel,
        wave_key,
    )
    from workflows.alert import alert_workflow_id


# PostgreSQL steps: quick retries, then a pause long enough to ride out a restart.
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
)
# Compensations never give up: they keep retrying until they take effect.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
)
CARRIER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
    non_retryable_error_types=["CarrierRejected"],
)
# Webhook deliveries: about 15 minutes of retries; the alert itself is stored regardless.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
)
DB_TIMEOUT = timedelta(seconds=15)
CARRIER_TIMEOUT = timedelta(minutes=2)
CARRIER_HEARTBEAT = timedelta(seconds=10)
MAX_DELIVERY_POLL = timedelta(hours=1)

# Undo of each step that takes effect, by the activity that performs it.
UNDO = {
    "reservation": ("inventory.release", True),
    "pick_list": ("warehouse.cancel_pick_list", True),
    "shipment": ("shipping.cancel_shipment", False),
    "invoice": ("billing.credit_note", True),
}
UNDO_SUMMARY = {
    "reservation": "release the reserved stock",
    "pick_list": "cancel the pick list",
    "shipment": "cancel the carrier booking",
    "invoice": "credit the invoice",
}


class OrderStopped(Exception):
    """The order leaves the happy path: rejected, cancelled or failed."""

    def __init__(self, status: OrderStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Rerouted(Exception):
    """An amendment changed which approvals the order needs: route it again."""


def _waiting_for(result: ReserveResult) -> str:
    """'SKU-A x3, SKU-B (production order #7)': what a backorder waits for."""
    return ", ".join(
        [f"{k} x{v}" for k, v in result.short.items()]
        + [f"{k} (production order #{v})" for k, v in result.in_production.items()]
    )


# Temporal caps a summary at 400 bytes (UTF-8, as JSON): a longer one would fail the task.
SUMMARY_BYTES = 300
# Current details list this many SKUs or tracking numbers, then "and N more".
DETAIL_ITEMS = 10


def one_line(text: str, limit: int = SUMMARY_BYTES) -> str:
    """A summary for the Temporal UI: one line, cut to fit Temporal's limit."""
    flat = " ".join(text.split())
    if len(flat.encode()) <= limit:
        return flat
    return flat.encode()[: limit - 3].decode(errors="ignore") + "…"


def listed(items: list[str]) -> str:
    more = len(items) - DETAIL_ITEMS
    return ", ".join(items[:DETAIL_ITEMS]) + (f" and {more} more" if more > 0 else "")


def utc(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def step_failed(name: str, err: ActivityError) -> OrderStopped:
    """A step that failed for good fails the order, saying which step and why."""
    message = getattr(err.cause, "message", None) or str(err.cause or err)
    return OrderStopped(OrderStatus.FAILED, f"step {name} failed: {message}")


# Who a decision sent straight to Temporal is recorded as (see decide_signal).
OVERRIDE_BY = "override via Temporal signal"


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    def __init__(self) -> None:
        self.order_id = ""
        self.status = OrderStatus.RECEIVED
        self.awaiting_role: str | None = None
        self.pending_level: int | None = None
        self.approvals: list[DecisionRecord] = []
        self.decision: Decision | None = None
        self.cancel_request: CancelRequest | None = None
        self.carrier_events: list[DeliveryEvent] = []
        self.replenished = False
        self.compensations: list[str] = []
        self.notes: list[str] = []
        self.failure: str | None = None
        self.finished = False
        self.shipping_held: str | None = None
        self.retry_shipping_by: str | None = None
        self._published: tuple[str, str | None] = (OrderStatus.RECEIVED.value, None)
        # Amendments: one at a time; lines only until reservation starts.
        self.total: Decimal | None = None
        self.amending = False
        self.amendments = 0
        self.lines_locked = False
        self.reroute: list[ApprovalLevel] | None = None
        self.settling = False
        self.approval_round = 1
        # Per routed role: the largest order total it approved (covers no larger total).
        self.approved_for: dict[str, Decimal] = {}
        # Partial shipment: shipments whose invoice is posted stay with the customer.
        self.bookings: list[Booking] = []
        self.closed_waves = 0
        self.remainder_cancelled: str | None = None
        # A carrier exception waiting for ops' decision.
        self.exception_on: str | None = None
        self.exception_decision: ExceptionDecision | None = None
        self.lost: list[str] = []
        # Steps combined in one local activity (see activities/fulfil.py), for orders
        # started since they exist.
        self.combined = False
        self.completion_written = False
        # Notices to approvers run beside the order; awaited before it ends.
        self.outbound: list[workflow.ActivityHandle] = []
        # What the Temporal UI shows as the order's current details (see _show): the step
        # running, the timer it waits on (summary, fires at), what a backorder is short of.
        self.line_count = 0
        self.step: str | None = None
        self.timer: tuple[str, datetime] | None = None
        self.sla_later: list[str] = []
        self.short: str | None = None

    # ---- messages -------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> OrderState:
        return OrderState(
            order_id=self.order_id,
            status=self.status,
            awaiting_role=self.awaiting_role,
            pending_level=self.pending_level,
            approvals=self.approvals,
            tracking_numbers=[b.tracking_number for b in self.bookings],
            cancel_reason=self.cancel_request.reason if self.cancel_request else None,
            failure=self.failure,
            shipping_held=self.shipping_held,
            exception_on=self.exception_on,
            amendments=self.amendments,
        )

    def _decision_problem(self, d: Decision) -> ApplicationError | None:
        if self.awaiting_role is None or self.decision is not None or self.finished:
            return ApplicationError(
                f"order {self.order_id} is {self.status.value}: nothing awaits a decision",
                type="NothingPending",
            )
        if self.amending or self.reroute is not None:
            return ApplicationError(
                f"order {self.order_id} is being amended: its approvals are re-evaluated, "
                "decide on the amended order",
                type="AmendmentInProgress",
            )
        if d.role != self.awaiting_role:
            return ApplicationError(
                f"level {self.pending_level} needs role {self.awaiting_role}, not {d.role}",
                type="WrongRole",
            )
        return None

    @workflow.update(name="decide")
    async def decide(self, d: Decision) -> OrderState:
        """An approver's decision on the pending level; answers once it has been applied."""
        self.decision = d
        # Answer with the state after the decision took effect: the next level is open, or
        # the order has moved on (approved, rejected).
        await workflow.wait_condition(
            lambda: (
                self.decision is None
                and (self.awaiting_role is not None or self.status != OrderStatus.AWAITING_APPROVAL)
            )
        )
        return self.state()

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        problem = self._decision_problem(d)
        if problem is not None:
            raise problem

    @workflow.signal(name="decide_signal")
    def decide_signal(self, d: Decision) -> None:
        """A decision sent straight to Temporal (its UI or CLI), past the API's tokens: the
        `by` and `role` it carries are whatever the sender typed, so they are not trusted.
        It counts only as an ops override, recorded as such (decided by OVERRIDE_BY, the
        claimed sender in the comment and on the timeline). Who may signal at all is
        Temporal's own authorization (docs/roles.md). Kept registered for histories in
        flight; orders from before the patch keep the old rule when they replay."""
        if not workflow.patched("decide-signal-override"):
            problem = self._decision_problem(d)
            if problem is not None:
                self.notes.append(
                    f"ignored decision signal from {d.by} ({d.role}): {problem.message}"
                )
                return
            self.decision = d
            return
        claimed = f"{d.by} ({d.role})" if d.role else d.by
        problem = self._decision_problem(d.model_copy(update={"role": self.awaiting_role}))
        if problem is not None:
            self.notes.append(f"ignored decision signal sent as {claimed}: {problem.message}")
            return
        self.notes.append(
            f"{d.decision} of level {self.pending_level} ({self.awaiting_role}) by ops "
            f"override via Temporal signal, sent as {claimed}"
        )
        self.decision = Decision(
            decision=d.decision,
            comment=(f"{d.comment} " if d.comment else "") + f"[sent as {claimed}]",
            by=OVERRIDE_BY,
            role=self.awaiting_role or "",
        )

    @workflow.update(name="cancel")
    async def cancel(self, req: CancelRequest) -> OrderState:
        """Cancel and compensate; answers once the cancel took effect (the order ended, or
        its unshipped remainder was cancelled). The API answers 202 meanwhile."""
        self.cancel_request = req

        def took_effect() -> bool:
            return self.finished or self.remainder_cancelled is not None

        if workflow.patched("cancel-waits-for-effect"):
            await workflow.wait_condition(took_effect)
        else:
            # Before: the Update failed after 30 s (TimeoutError), though the cancel went on.
            await workflow.wait_condition(took_effect, timeout=timedelta(seconds=30))
        return self.state()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        if self.status in SHIPPED_OR_LATER:
            raise ApplicationError(
                f"order {self.order_id} is {self.status.value}: it has shipped, so it cannot be "
                "cancelled; raise a return instead",
                type="NotCancellable",
            )
        if not can_cancel(self.status) or self.cancel_request is not None or self.finished:
            raise ApplicationError(
                f"order {self.order_id} is {self.status.value} and cannot be cancelled",
                type="NotCancellable",
            )

    @workflow.update(name="retry_shipping")
    async def retry_shipping(self, req: CancelRequest) -> OrderState:
        """Ops: the carrier problem is fixed, book again (answers once the retry started)."""
        self.retry_shipping_by = req.by
        await workflow.wait_condition(lambda: self.retry_shipping_by is None or self.finished)
        return self.state()

    @retry_shipping.validator
    def _validate_retry(self, req: CancelRequest) -> None:
        if self.shipping_held is None or self.retry_shipping_by is not None:
            raise ApplicationError(
                f"order {self.order_id} is {self.status.value}: no carrier booking is on hold",
                type="NothingPending",
            )

    @workflow.update(name="amend")
    async def amend(self, a: Amendment) -> OrderState:
        """Change lines (before reservation), ship-to or requested date (before shipment).
        New lines are re-validated, re-priced and re-routed; answers once the order has
        settled on its new approval chain."""
        self.amending = True
        try:
            problem = self._amend_problem(a)  # the order may have moved since validation
            if problem is not None:
                raise problem
            self._show()
            result: AmendResult = await workflow.execute_local_activity(
                "intake.amend_order",
                AmendRequest(
                    order_id=self.order_id,
                    amend_id=str(workflow.uuid4()),
                    by=a.by,
                    change=a.change,
                    routing=self.inp.routing,
                    overdue_grace_days=self.inp.overdue_grace_days,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
                result_type=AmendResult,
                summary=one_line(f"amend by {a.by}: validate, price and route again"),
            )
            if not result.ok:
                raise ApplicationError(
                    "the amendment is invalid: " + "; ".join(p.message for p in result.problems),
                    [p.model_dump() for p in result.problems],
                    type="InvalidAmendment",
                )
            self.amendments += 1
            if result.lines_changed:
                self.line_count = len(a.change.lines or [])
                self.total = result.total
                self.reroute = self._uncovered(result.levels)
                self.settling = True
        finally:
            self.amending = False
        await workflow.wait_condition(lambda: not self.settling or self.finished)
        return self.state()

    @amend.validator
    def _validate_amend(self, a: Amendment) -> None:
        if self.amending or self.settling or self.decision is not None:
            raise ApplicationError(
                f"order {self.order_id} has an amendment in progress; try again in a moment",
                type="AmendmentInProgress",
            )
        problem = self._amend_problem(a)
        if problem is not None:
            raise problem

    def _amend_problem(self, a: Amendment) -> ApplicationError | None:
        if not self.order_id:  # the update came with the workflow's very first task
            return ApplicationError("the order is starting; retry in a moment", type="NotReady")
        if self.finished or self.cancel_request is not None or not can_cancel(self.status):
            return ApplicationError(
                f"order {self.order_id} is {self.status.value}: it can no longer be amended",
                type="NotAmendable",
            )
        if a.change.lines is not None and (self.lines_locked or self.status not in LINES_AMENDABLE):
            return ApplicationError(
                f"order {self.order_id} is {self.status.value}: stock is being reserved, so "
                "only ship_to and requested_delivery_date can change",
                type="NotAmendable",
            )
        return None

    def _uncovered(self, levels: list[ApprovalLevel]) -> list[ApprovalLevel]:
        """The levels the amended order still needs: an approval already given covers its
        role up to the total it was given for, never a larger one. Numbered after the
        levels the order has had, so its history stays whole."""
        needed = [
            lvl
            for lvl in levels
            if not (
                lvl.role in self.approved_for
                and self.total is not None
                and self.approved_for[lvl.role] >= self.total
            )
        ]
        first = max((a.level for a in self.approvals), default=0) + 1
        return [lvl.model_copy(update={"level": first + i}) for i, lvl in enumerate(needed)]

    @workflow.update(name="resolve_exception")
    async def resolve_exception(self, d: ExceptionDecision) -> OrderState:
        """Ops' decision on a carrier exception: `lost` credits that shipment's invoice and
        ends the order failed; `wait` keeps following the shipment."""
        self.exception_decision = d
        await workflow.wait_condition(lambda: self.exception_decision is None or self.finished)
        return self.state()

    @resolve_exception.validator
    def _validate_resolve(self, d: ExceptionDecision) -> None:
        if self.exception_on is None or self.exception_decision is not None:
            raise ApplicationError(
                f"order {self.order_id} is {self.status.value}: no carrier exception awaits "
                "a decision",
                type="NothingPending",
            )

    @workflow.signal(name="carrier_event")
    def carrier_event(self, event: DeliveryEvent) -> None:
        self.carrier_events.append(event)

    @workflow.signal(name="stock_replenished")
    def stock_replenished(self, ref: OrderRef) -> None:
        self.replenished = True

    # ---- the pipeline ---------------------------------------------------------------

    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderState:
        self.order_id = inp.order_id
        self.inp = inp
        self.line_count = inp.lines
        try:
            await self._pipeline()
        except OrderStopped as stop:
            await self._stop(stop)
        await self._drain_outbound()
        self.finished = True
        # Let an in-flight cancel/decide update return its answer before the run ends.
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _pipeline(self) -> None:
        # Orders started before combined steps existed replay their steps one by one.
        self.combined = workflow.patched("combined-steps")
        assess = AssessRequest(
            order_id=self.order_id,
            routing=self.inp.routing,
            overdue_grace_days=self.inp.overdue_grace_days,
        )
        first: Prepared | None = None
        if self.combined:
            # A touchless order is reserved in this same step: its lines are fixed from
            # here, unless it turns out to need an approval first.
            self.lines_locked = True
            passed = await self._db(
                "fulfil.first_pass",
                FirstPassRequest(assess=assess, ship_partial=self.inp.allow_partial),
                FirstPass,
                summary=f"check {self._lines()} (credit, prices, approvals); reserve and pack "
                "them if no approval is needed",
            )
            assessment, first = passed.assessment, passed.prepared
            self.lines_locked = first is not None
        else:
            assessment = await self._db(
                "intake.assess_order",
                assess,
                Assessment,
                summary=f"check {self._lines()}: credit, prices, approvals",
            )
        if not assessment.ok:
            problems = "; ".join(p.message for p in assessment.problems)
            raise OrderStopped(OrderStatus.REJECTED, f"validation: {problems}")
        self._moved(OrderStatus.VALIDATED)
        if self.total is None:  # an amendment that landed meanwhile has the newer total
            self.total = assessment.total
        await self._approval_stage(assessment.levels)
        self._checkpoint()

        shipment_no = 1
        while True:
            try:
                if await self._ship(shipment_no, first):
                    break
            except OrderStopped as stop:
                if not self.closed_waves:
                    raise
                # Part of the order is with the customer: only the remainder is undone.
                await self._undo(stop)
                self.remainder_cancelled = stop.reason
                await self._note(
                    "remainder-cancelled",
                    f"remainder cancelled ({stop.reason}); the {self.closed_waves} shipment(s) "
                    "sent stay with the customer",
                )
                break
            shipment_no += 1
            first = None

        await self._await_delivery(self.bookings)
        if self.lost:
            self.compensations.clear()  # lost goods do not come back; their invoice is credited
            raise OrderStopped(
                OrderStatus.FAILED,
                f"shipment {', '.join(self.lost)} lost in transit; its invoice was credited",
            )
        self._moved(OrderStatus.DELIVERED)
        if not self.completion_written:
            await self._db("orders.set_status", self._completion(), summary="status: completed")
        self._moved(OrderStatus.COMPLETED)

    async def _approval_stage(self, levels: list[ApprovalLevel]) -> None:
        """Approvals, routed again whenever an amendment changes what the order needs."""
        while True:
            if levels:
                try:
                    await self._approvals(levels)
                except Rerouted:
                    levels = self._take_reroute()
                    continue
            # First-pass approval was written by the assessment; anything else is written here.
            if levels or self.approval_round > 1:
                await self._db(
                    "orders.set_status",
                    self._change(
                        OrderStatus.APPROVED,
                        wave_key("approved", self.approval_round),
                        "all approval levels approved"
                        if levels
                        else "amended: the approvals already given cover it (or none is needed)",
                    ),
                    summary="status: approved",
                )
            self._moved(OrderStatus.APPROVED)
            if self.amending:  # an amendment started before reservation: let it land
                await workflow.wait_condition(lambda: not self.amending)
            if self.reroute is None:
                break
            levels = self._take_reroute()
        self.lines_locked = True
        self.settling = False

    def _take_reroute(self) -> list[ApprovalLevel]:
        levels, self.reroute = self.reroute or [], None
        self.approval_round += 1
        return levels

    async def _ship(self, n: int, first: Prepared | None = None) -> bool:
        """Reserve, pick, pack, book, invoice one shipment; True when the order is all sent
        (False: a partial shipment went out and the rest follows). `first`: the first
        pass already reserved and packed it."""
        ref = OrderRef(order_id=self.order_id, shipment_no=n)
        prepared = await self._reserve(ref, first)
        reserved, packed = prepared.reserved, prepared.packed
        if packed is None:  # steps one by one (orders from before combined steps)
            await self._db("warehouse.create_pick_list", ref, summary=f"pick list for shipment {n}")
            self.compensations.append("pick_list")
            self._moved(OrderStatus.PICKING)
            self._checkpoint()
            packed = await self._db("warehouse.pack", ref, PackResult, summary=f"pack shipment {n}")
        else:
            self.compensations.append("pick_list")
        self._moved(OrderStatus.PACKED)
        self._checkpoint()

        # A booking can take effect at the carrier before we hear back: its undo is due
        # from the moment we ask. A cancel interrupts a booking that keeps retrying.
        self.compensations.append("shipment")
        booking = await self._book(
            ShipmentRequest(order_id=self.order_id, shipment_no=n, packages=packed.packages)
        )
        # A cancel accepted in the same workflow task as the booking's result: honour it
        # before the goods leave. The booking is undone by the "shipment" compensation
        # (the carrier cancels it even though we never recorded it).
        if self.cancel_request is not None and workflow.patched("checkpoint-after-booking"):
            self._checkpoint()
        record = ShipmentRecord(
            order_id=self.order_id, shipment_no=n, booking=booking, packages=packed.packages
        )
        tracking = booking.tracking_number
        if self.combined:
            await self._db(
                "fulfil.ship_and_invoice",
                record,
                summary=f"ship {tracking} (shipment {n}) and invoice it",
            )
            self.bookings.append(booking)
        else:
            await self._db(
                "shipping.record_shipment", record, summary=f"ship {tracking} (shipment {n})"
            )
            self.bookings.append(booking)
            self._moved(OrderStatus.SHIPPED)
            await self._db("billing.invoice", ref, summary=f"invoice shipment {n}")
        self.compensations.append("invoice")
        self._moved(OrderStatus.INVOICED)
        if reserved.fully_reserved:
            return True
        # Shipped and billed: this part is the customer's now, whatever happens to the rest.
        self.closed_waves = n
        self.compensations.clear()
        return False

    async def _interruptible(self, name: str, arg, result_type, summary: str):  # type: ignore[no-untyped-def]
        """A carrier call that a cancel request can cut short (between or during attempts)."""
        self.step = one_line(summary)
        self._publish()
        handle = workflow.start_activity(
            name,
            arg,
            start_to_close_timeout=CARRIER_TIMEOUT,
            heartbeat_timeout=CARRIER_HEARTBEAT,
            retry_policy=CARRIER_RETRY,
            result_type=result_type,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=self.step,
        )
        await workflow.wait_condition(lambda: handle.done() or self.cancel_request is not None)
        self.step = None
        if not handle.done():
            handle.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
            self._checkpoint()
        try:
            return await handle
        except ActivityError as err:
            raise step_failed(name, err) from err

    async def _book(self, req: ShipmentRequest) -> Booking:
        """Book the carrier. When it refuses for good, the order waits in `packed` for ops
        to retry (after fixing the cause) or cancel, instead of failing outright."""
        attempt = 1
        while True:
            try:
                return await self._interruptible(  # type: ignore[no-any-return]
                    "shipping.book",
                    req,
                    Booking,
                    f"book carrier for shipment {req.shipment_no} ({req.packages} "
                    f"package{'s' if req.packages != 1 else ''})",
                )
            except OrderStopped as stop:
                if stop.status != OrderStatus.FAILED or not workflow.patched("carrier-hold"):
                    raise
                self.shipping_held = stop.reason
                await self._alert(
                    "carrier_failed",
                    "critical",
                    f"order {self.order_id}: {stop.reason}; retry with POST /orders/"
                    f"{self.order_id}/retry-shipping or cancel it",
                    key=f"carrier_failed:{attempt}",
                )
                retried = await self._wait(
                    lambda: self.retry_shipping_by is not None,
                    timedelta(days=30),
                    timer=f"carrier hold: fail the order unless ops retry shipment "
                    f"{req.shipment_no} or cancel",
                )
                if not retried:
                    raise
                await self._note(
                    f"retry-shipping:{attempt}",
                    f"{self.retry_shipping_by} asked to retry the booking",
                )
                self.shipping_held, self.retry_shipping_by = None, None
                attempt += 1

    async def _reserve(self, ref: OrderRef, first: Prepared | None = None) -> Prepared:
        """Reserve stock (and, in one step with it, pick and pack what can go); when short,
        wait in backordered for a replenishment signal (or, when partial shipment is
        allowed, go with what is reserved)."""
        waited = timedelta(0)
        limit = timedelta(seconds=self.inp.backorder_max_seconds)
        recheck = timedelta(seconds=self.inp.backorder_recheck_seconds)
        alert_after = timedelta(seconds=self.inp.backorder_alert_seconds)
        alerted = False
        while True:
            if first is not None:
                prepared, first = first, None
            elif self.combined:
                prepared = await self._db(
                    "fulfil.prepare",
                    PrepareRequest(ref=ref, ship_partial=self.inp.allow_partial),
                    Prepared,
                    summary=f"reserve {self._lines()}, pick and pack shipment {ref.shipment_no}",
                )
            else:
                prepared = Prepared(
                    reserved=await self._db(
                        "inventory.reserve",
                        ref,
                        ReserveResult,
                        summary=f"reserve {self._lines()} (shipment {ref.shipment_no})",
                    )
                )
            result = prepared.reserved
            self.short = one_line(_waiting_for(result), 1000) or None
            if "reservation" not in self.compensations:
                self.compensations.append("reservation")
            if result.fully_reserved:
                self._moved(OrderStatus.RESERVED)
                return prepared
            self._moved(OrderStatus.BACKORDERED)
            if self.inp.allow_partial and result.ready_units > 0:
                return prepared
            if waited >= limit:
                await self._alert(
                    "backorder_timeout",
                    "critical",
                    f"order {self.order_id} waited {waited} for stock: " + _waiting_for(result),
                )
                raise OrderStopped(
                    OrderStatus.CANCELLED,
                    f"backorder not filled within {limit}: short " + _waiting_for(result),
                )
            if waited >= alert_after and not alerted:
                alerted = True
                await self._alert(
                    "stuck_backordered",
                    "warning",
                    f"order {self.order_id} has been backordered for {waited}, longer than "
                    f"the expected {alert_after}: short " + _waiting_for(result),
                )
            self.replenished = False
            step = min(recheck, limit - waited)
            if not alerted:
                step = min(step, alert_after - waited)
            if step == limit - waited:
                then = "cancel the order if stock is still short"
            elif step == alert_after - waited and not alerted:
                then = "alert ops if stock is still short"
            else:
                then = "check stock again"
            start = workflow.now()
            await self._wait(
                lambda: self.replenished, step, timer=f"backorder: {then} ({self.short})"
            )
            waited += workflow.now() - start

    async def _approvals(self, levels: list[ApprovalLevel]) -> None:
        for lvl in levels:
            await self._approve_level(lvl)

    async def _approve_level(self, lvl: ApprovalLevel) -> None:
        """Wait for one level with its SLA: reminder, escalation to a backup role, timeout."""
        sla = self.inp.sla
        role = lvl.role
        await self._open_level(lvl.level, role, lvl.reason)
        phases = [
            ("reminder", sla.reminder_seconds),
            ("escalation", sla.escalation_seconds - sla.reminder_seconds),
            ("timeout", sla.timeout_seconds - sla.escalation_seconds),
        ]
        timers = {
            "reminder": f"approval SLA: remind {role}",
            "escalation": f"approval SLA: escalate to {sla.escalate_to.get(role, 'admin')}",
            "timeout": f"approval SLA: time out ({lvl.on_timeout})",
        }
        for i, (phase, seconds) in enumerate(phases):
            fires, self.sla_later = workflow.now(), []
            for later, later_seconds in phases[i:]:
                fires += timedelta(seconds=max(later_seconds, 0))
                if later != phase:
                    self.sla_later.append(f"{timers[later]} at {utc(fires)}")
            if await self._wait(
                lambda: self.decision is not None or self.reroute is not None,
                timedelta(seconds=max(seconds, 0)),
                timer=timers[phase],
            ):
                break
            if phase == "reminder":
                await self._notify(
                    role,
                    f"reminder: order {self.order_id} waits for your approval (level {lvl.level})",
                    f"remind:{lvl.level}:{role}",
                )
            elif phase == "escalation":
                backup = sla.escalate_to.get(role, "admin")
                await self._alert(
                    "approval_escalated",
                    "warning",
                    f"order {self.order_id} level {lvl.level} not decided by {role} within "
                    f"{timedelta(seconds=sla.escalation_seconds)}; escalated to {backup}",
                    key=f"escalated:{lvl.level}",
                )
                self._record_level(lvl.level, role, "escalated", None, "", lvl.reason)
                role = backup
                await self._open_level(lvl.level, role, f"escalated: {lvl.reason}")
            else:
                await self._alert(
                    "approval_timeout",
                    "critical",
                    f"order {self.order_id} level {lvl.level} timed out waiting for {role}",
                    key=f"timeout:{lvl.level}",
                )
                if lvl.on_timeout == "approve":
                    self._approved(lvl.role)
                    await self._close_level(
                        lvl.level,
                        role,
                        "approved",
                        "system",
                        "auto-approved at timeout",
                        lvl.reason,
                    )
                    return
                await self._close_level(
                    lvl.level,
                    role,
                    "timed_out",
                    "system",
                    "no decision before the timeout",
                    lvl.reason,
                )
                raise OrderStopped(
                    OrderStatus.REJECTED, f"approval level {lvl.level} ({role}) timed out"
                )
        if self.reroute is not None:
            await self._close_level(
                lvl.level, role, "superseded", None, "order amended before a decision", lvl.reason
            )
            raise Rerouted()
        d = self.decision
        assert d is not None
        status = "approved" if d.decision == "approve" else "rejected"
        if status == "approved":
            self._approved(lvl.role)
        await self._close_level(lvl.level, role, status, d.by, d.comment, lvl.reason)
        self.decision = None
        if status == "rejected":
            raise OrderStopped(
                OrderStatus.REJECTED,
                f"rejected by {d.by} ({role}) at level {lvl.level}"
                + (f": {d.comment}" if d.comment else ""),
            )

    def _approved(self, role: str) -> None:
        """Remember the total a role approved: an amendment above it needs the role again."""
        if self.total is not None:
            self.approved_for[role] = max(self.approved_for.get(role, self.total), self.total)

    async def _open_level(self, level: int, role: str, reason: str) -> None:
        rec = DecisionRecord(
            order_id=self.order_id, level=level, role=role, status="pending", reason=reason
        )
        await self._db(
            "approvals.open_level", rec, summary=f"open approval level {level} for {role}"
        )
        self._record_level(level, role, "pending", None, "", reason)
        self._moved(OrderStatus.AWAITING_APPROVAL, awaiting_role=role, level=level)
        self.settling = False  # an amendment's new chain is open: its caller gets its answer
        await self._notify(
            role,
            f"order {self.order_id} needs your approval (level {level}): {reason}",
            f"request:{level}:{role}",
        )

    async def _close_level(
        self, level: int, role: str, status: str, by: str | None, comment: str, reason: str
    ) -> None:
        rec = DecisionRecord(
            order_id=self.order_id,
            level=level,
            role=role,
            status=status,
            decided_by=by,
            comment=comment,
            reason=reason,
            amount=self.total if status == "approved" else None,
        )
        await self._db(
            "approvals.record_decision",
            rec,
            summary=f"approval level {level} ({role}): {status}" + (f" by {by}" if by else ""),
        )
        self._record_level(level, role, status, by, comment, reason)
        self.awaiting_role = None
        self.pending_level = None
        self.sla_later = []

    def _record_level(
        self, level: int, role: str, status: str, by: str | None, comment: str, reason: str
    ) -> None:
        self.approvals = [a for a in self.approvals if not (a.level == level and a.role == role)]
        self.approvals.append(
            DecisionRecord(
                order_id=self.order_id,
                level=level,
                role=role,
                status=status,  # type: ignore[arg-type]
                decided_by=by,
                comment=comment,
                reason=reason,
                amount=self.total if status == "approved" else None,
            )
        )

    async def _await_delivery(self, bookings: list[Booking]) -> None:
        """Follow every shipment until the carrier confirms it delivered (or ops call it
        lost after a carrier exception)."""
        pending = {b.tracking_number: b for b in bookings}
        poll = timedelta(seconds=self.inp.delivery_poll_seconds)
        late = workflow.now() + timedelta(seconds=self.inp.delivery_alert_seconds)
        while pending:
            await self._wait(
                lambda: bool(self.carrier_events) or self.exception_decision is not None,
                poll,
                cancellable=False,
                timer=f"wait for delivery of {listed(list(pending))}, then ask the carrier",
            )
            # Ask the carrier less and less often (up to hourly): a long transit must not
            # fill the history with tracking calls; its webhook still wakes us at once.
            poll = min(poll * 2, max(MAX_DELIVERY_POLL, poll))
            if workflow.now() >= late:
                late = workflow.now() + timedelta(days=365 * 100)  # page once
                await self._alert(
                    "delivery_late",
                    "warning",
                    f"order {self.order_id}: {', '.join(pending)} not confirmed delivered "
                    f"within {timedelta(seconds=self.inp.delivery_alert_seconds)} of booking",
                )
            if self.exception_decision is not None:
                await self._decide_exception(pending)
                continue
            if not self.carrier_events:
                for booking in list(pending.values()):
                    tracked = await self._step(
                        "shipping.track",
                        TrackRequest(
                            tracking_number=booking.tracking_number, booked_at=booking.booked_at
                        ),
                        summary=f"track {booking.tracking_number} with {booking.carrier}",
                        start_to_close_timeout=CARRIER_TIMEOUT,
                        heartbeat_timeout=CARRIER_HEARTBEAT,
                        retry_policy=CARRIER_RETRY,
                        result_type=TrackResult,
                    )
                    if tracked.status in ("delivered", "exception"):
                        self.carrier_events.append(
                            DeliveryEvent(
                                tracking_number=booking.tracking_number,
                                status=tracked.status,
                                at=tracked.at,
                            )
                        )
            while self.carrier_events and pending:
                event = self.carrier_events.pop(0)
                if (
                    self.combined
                    and event.status == "delivered"
                    and list(pending) == [event.tracking_number]
                    and not self.lost
                ):
                    # The last delivery completes the order, in the same step.
                    await self._db(
                        "fulfil.deliver_and_complete",
                        DeliveryClose(event=event, completion=self._completion()),
                        summary=f"record delivery of {event.tracking_number}; complete the order",
                    )
                    self.completion_written = True
                else:
                    await self._db(
                        "shipping.record_delivery",
                        event,
                        summary=f"record {event.status} of {event.tracking_number}",
                    )
                if event.status == "delivered":
                    pending.pop(event.tracking_number, None)
                    if self.exception_on == event.tracking_number:
                        self.exception_on = None  # the carrier found it after all
                elif event.status == "exception" and event.tracking_number in pending:
                    self.exception_on = event.tracking_number
                    await self._alert(
                        "carrier_exception",
                        "warning",
                        f"carrier reports an exception on {event.tracking_number}; if the "
                        f"goods are lost: POST /orders/{self.order_id}/carrier-exception "
                        '{"action": "lost"} credits the shipment and ends the order',
                        key=f"carrier_exception:{event.tracking_number}",
                    )

    async def _decide_exception(self, pending: dict[str, Booking]) -> None:
        d, tracking = self.exception_decision, self.exception_on
        assert d is not None
        if tracking is None:  # the carrier delivered it while the decision was on its way
            await self._note(
                f"exception-moot:{workflow.uuid4()}",
                f"{d.by} decided '{d.action}', but the shipment was delivered meanwhile",
            )
        elif d.action == "lost":
            await self._db(
                "shipping.mark_lost",
                ShipmentLoss(
                    order_id=self.order_id, tracking_number=tracking, by=d.by, comment=d.comment
                ),
                summary=f"{tracking} lost (by {d.by}): credit its invoice",
            )
            pending.pop(tracking, None)
            self.lost.append(tracking)
        else:
            await self._note(
                f"exception-wait:{tracking}:{workflow.uuid4()}",
                f"{d.by} keeps waiting for {tracking}" + (f": {d.comment}" if d.comment else ""),
            )
        self.exception_on = None
        self.exception_decision = None

    # ---- stopping and compensation ----------------------------------------------------

    def _checkpoint(self) -> None:
        if self.cancel_request is not None:
            req = self.cancel_request
            raise OrderStopped(
                OrderStatus.CANCELLED,
                f"cancelled by {req.by}" + (f": {req.reason}" if req.reason else ""),
            )

    async def _stop(self, stop: OrderStopped) -> None:
        """Undo what took effect, newest first, each exactly once; then end the order."""
        self.failure = stop.reason
        await self._undo(stop)
        if self.awaiting_role is not None and self.pending_level is not None:
            await self._close_level(
                self.pending_level, self.awaiting_role, "cancelled", None, stop.reason, ""
            )
        await workflow.execute_local_activity(
            "orders.set_status",
            self._change(stop.status, stop.status.value, stop.reason),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=COMPENSATION_RETRY,
            summary=one_line(f"status: {stop.status.value} ({stop.reason})"),
        )
        self._moved(stop.status)

    async def _undo(self, stop: OrderStopped) -> None:
        """Run the registered compensations, newest first (shipments already with the
        customer after a partial shipment are not touched)."""
        for step in reversed(self.compensations):
            activity_name, local = UNDO[step]
            comp = Compensation(
                order_id=self.order_id,
                step=step,  # type: ignore[arg-type]
                reason=stop.reason,
                from_shipment=self.closed_waves + 1,
            )
            self.step = one_line(f"undo: {UNDO_SUMMARY[step]} ({stop.status.value})")
            if local:
                self._show()
                await workflow.execute_local_activity(
                    activity_name,
                    comp,
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=COMPENSATION_RETRY,
                    summary=self.step,
                )
            else:
                self._publish()
                await workflow.execute_activity(
                    activity_name,
                    comp,
                    start_to_close_timeout=CARRIER_TIMEOUT,
                    heartbeat_timeout=CARRIER_HEARTBEAT,
                    retry_policy=COMPENSATION_RETRY,
                    summary=self.step,
                )
            self.step = None
        self.compensations.clear()

    # ---- helpers ------------------------------------------------------------------

    async def _wait(  # type: ignore[no-untyped-def]
        self, ready, within: timedelta, cancellable: bool = True, *, timer: str
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
            self._publish()
            try:
                await workflow.wait_condition(woken, timeout=remaining, timeout_summary=timer)
            except TimeoutError:
                return bool(ready())
            finally:
                self.timer = None
            await self._flush_notes()
            if cancellable:
                self._checkpoint()
            if ready():
                return True

    async def _note(self, step_key: str, detail: str) -> None:
        """A timeline entry that does not change the status."""
        await self._db(
            "orders.note",
            StatusChange(
                order_id=self.order_id, status=self.status, step_key=step_key, detail=detail
            ),
            summary=f"timeline: {detail}",
        )

    async def _drain_outbound(self) -> None:
        """Let notices finish delivering; a failed delivery never fails the order."""
        self._publish()
        for handle in self.outbound:
            try:
                await handle
            except ActivityError as err:
                await self._note(
                    f"note:{workflow.uuid4()}", f"outbound delivery gave up: {err.cause or err}"
                )
        self.outbound.clear()

    async def _flush_notes(self) -> None:
        while self.notes:
            note = self.notes.pop(0)
            await self._note(f"note:{workflow.uuid4()}", note)

    def _completion(self) -> StatusChange:
        return self._change(OrderStatus.COMPLETED, "completed", "order complete")

    def _change(self, status: OrderStatus, key: str, detail: str) -> StatusChange:
        return StatusChange(order_id=self.order_id, status=status, step_key=key, detail=detail)

    def _moved(
        self, status: OrderStatus, awaiting_role: str | None = None, level: int | None = None
    ) -> None:
        """Follow a status in the workflow state; the search attributes follow at the next
        point where the workflow waits (see _publish)."""
        self.status = status
        self.awaiting_role = awaiting_role
        self.pending_level = level

    def _lines(self) -> str:
        """'3 lines' ('the lines' for orders started before the count came with them)."""
        n = self.line_count
        return f"{n} line{'s' if n != 1 else ''}" if n else "the lines"

    def _show(self) -> None:
        """Keep the order's current details (Temporal UI, workflow page) up to date."""
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        """Markdown: the status and why the order waits (who for, until when, on what)."""
        head = f"**{self.status.value.replace('_', ' ')}**"
        why: list[str] = []
        if self.status in FINAL_STATUSES:
            head += f": {self.failure}" if self.failure else ""
        elif self.awaiting_role is not None:
            head = f"**awaiting approval**: level {self.pending_level}"
            head += f", role **{self.awaiting_role}**"
            why += [
                f"- reason: {a.reason}"
                for a in self.approvals
                if a.status == "pending" and a.level == self.pending_level and a.reason
            ][-1:]
        elif self.status == OrderStatus.BACKORDERED and self.short:
            why.append(f"- short: {self.short}")
        if self.shipping_held is not None:
            head = "**packed, carrier booking on hold**"
            why.append(f"- {self.shipping_held}")
            why.append(
                f"- ops: POST /orders/{self.order_id}/retry-shipping once the cause is fixed, "
                "or cancel the order"
            )
        if self.exception_on is not None:
            why.append(
                f"- carrier exception on {self.exception_on}: ops decide lost or wait "
                f"(POST /orders/{self.order_id}/carrier-exception)"
            )
        if self.remainder_cancelled is not None:
            why.append(f"- remainder cancelled: {self.remainder_cancelled}")
        if self.cancel_request is not None and not self.finished:
            why.append(f"- cancel requested by {self.cancel_request.by}: undoing what took effect")
        if self.amending or self.settling:
            why.append("- amendment in progress: its approvals are being re-evaluated")
        if self.step is not None:
            why.append(f"- running: {self.step}")
        if self.timer is not None and not self.finished:
            why.append(f"- next: {self.timer[0]} at {utc(self.timer[1])}")
            if self.awaiting_role is not None:
                why += [f"- then: {later}" for later in self.sla_later]
        if self.amendments and self.total is not None:
            why.append(f"- amended {self.amendments}x; total now {self.total:,.2f}")
        return "\n".join([head, *why])

    def _publish(self) -> None:
        """Upsert the search attributes if they changed. Called wherever the workflow task
        can end (before waiting, before a normal activity, at the end): steps run as local
        activities within one task, so one upsert per task keeps the UI exact at every point
        it can observe, for a third of the history events. The current details follow at
        the same points (they are no command: a query reads them)."""
        self._show()
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

    async def _db(self, name: str, arg, result_type=None, *, summary: str):  # type: ignore[no-untyped-def]
        """A PostgreSQL-only step as a local activity; a failure for good fails the order."""
        return await self._step(name, arg, local=True, result_type=result_type, summary=summary)

    async def _step(
        self,
        name: str,
        arg,
        *,
        summary: str,
        local: bool = False,
        result_type=None,  # type: ignore[no-untyped-def]
        **options,
    ):
        """Run one step; `summary` names it in the Temporal UI (event and current details)."""
        summary = one_line(summary)
        self.step = summary
        try:
            if local:
                self._show()
                return await workflow.execute_local_activity(
                    name,
                    arg,
                    start_to_close_timeout=DB_TIMEOUT,
                    retry_policy=DB_RETRY,
                    result_type=result_type,
                    summary=summary,
                )
            self._publish()
            return await workflow.execute_activity(
                name, arg, result_type=result_type, summary=summary, **options
            )
        except ActivityError as err:
            raise step_failed(name, err) from err
        finally:
            self.step = None

    async def _alert(self, kind: str, severity: str, summary: str, key: str | None = None) -> None:
        """Raise an on-call alert. It lives in its own workflow (id = dedup key), so it is
        stored and delivered once even if this order finishes first."""
        alert = Alert(
            dedup_key=f"{self.order_id}:{key or kind}",
            kind=kind,
            severity=severity,  # type: ignore[arg-type]
            order_id=self.order_id,
            summary=summary,
        )
        self._publish()
        try:
            await workflow.start_child_workflow(
                "AlertWorkflow",
                alert,
                id=alert_workflow_id(alert.dedup_key),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=one_line(f"{severity} alert {kind}: {summary}"),
            )
        except WorkflowAlreadyStartedError:
            pass  # raised before (e.g. by a retried step): one alert, not two
        await self._note(f"alert:{alert.dedup_key}", f"alert raised: {summary}")

    async def _notify(self, role: str, subject: str, key: str) -> None:
        notice = Notice(
            dedup_key=f"{self.order_id}:{key}", role=role, order_id=self.order_id, subject=subject
        )
        self.outbound.append(
            workflow.start_activity(
                "notify.notify_role",
                notice,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=NOTIFY_RETRY,
                summary=one_line(f"notify {role}: {subject}"),
            )
        )
        await self._note(f"notice:{key}", subject)
