"""OrderWorkflow: one durable workflow per order, orchestration only.

`run()` is the life of one order; its stages are small objects it owns, each in its own
module: the approval chain (workflows/approval.py), fulfilment (fulfilment.py), delivery
(delivery.py) and compensation (compensation.py), sharing one OrderContext (context.py).
Steps that only touch PostgreSQL are local activities: they cost one marker event each
instead of three events and a round trip through the matching service. The carrier is the
outside world, so booking and tracking are normal activities with heartbeats.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.amendment import Amendments
from workflows.approval import ApprovalChain
from workflows.compensation import Compensations
from workflows.context import OrderContext, OrderStopped
from workflows.delivery import Delivery
from workflows.fulfilment import Fulfilment
from workflows.policies import OLD_CANCEL_UPDATE_WAIT
from workflows.substitution import Substitutions

with workflow.unsafe.imports_passed_through():
    from activities.assessment import AssessmentActivities
    from activities.fulfil import FulfilActivities
    from activities.orders import OrderActivities
    from domain.approvals import Assessment, AssessRequest, Decision
    from domain.fulfilment import FirstPassRequest, PackagesGiven, PickConfirmation, Prepared
    from domain.orders import Amendment, CancelRequest, OrderRef, OrderState, OrderWorkflowInput
    from domain.shipping import DeliveryEvent, ExceptionDecision
    from domain.status import SHIPPED_OR_LATER, OrderStatus, can_cancel
    from domain.substitution import Substitution


@workflow.defn(name="OrderWorkflow")
class OrderWorkflow:
    @workflow.init
    def __init__(self, inp: OrderWorkflowInput) -> None:
        self.ctx = OrderContext(inp)
        self.compensations = Compensations(self.ctx)
        self.approval = ApprovalChain(self.ctx)
        self.amendments = Amendments(self.ctx, self.approval)
        self.fulfilment = Fulfilment(self.ctx, self.compensations)
        self.delivery = Delivery(self.ctx)
        # Orders since "combined-steps-v2": one patch marker stands for both
        # "combined-steps" and "first-pass-undo" (each marker costs two history events).
        self.first_pass_undo = False
        self.substitutions = Substitutions(self.ctx, self.amendments, self.fulfilment)

    # ---- the life of an order -------------------------------------------------------

    @workflow.run
    async def run(self, inp: OrderWorkflowInput) -> OrderState:
        self.ctx.started = True
        try:
            await self._pipeline()
        except OrderStopped as stop:
            await self._stop(stop)
        await self.ctx.drain_outbound()
        self.ctx.finished = True
        # Let an in-flight cancel/decide update return its answer before the run ends.
        self.ctx.publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _pipeline(self) -> None:
        ctx = self.ctx
        assessment, first = await self._assess()
        if first is not None and (self.first_pass_undo or workflow.patched("first-pass-undo")):
            # The first pass reserved (and picked and packed) in the assessment's own step:
            # a cancel accepted meanwhile stops the order before fulfilment takes over, and
            # must still give that stock back.
            self.compensations.once("reservation")
            if first.packed is not None:
                self.compensations.once("pick_list")
        if not assessment.ok:
            problems = "; ".join(p.message for p in assessment.problems)
            raise OrderStopped(OrderStatus.REJECTED, f"validation: {problems}")
        ctx.moved(OrderStatus.VALIDATED)
        if ctx.total is None:  # an amendment that landed meanwhile has the newer total
            ctx.total = assessment.total
        await self.approval.run(assessment.levels)
        ctx.checkpoint()

        bookings = await self.fulfilment.run(first)

        await self.delivery.follow(bookings)
        if self.delivery.lost:
            self.compensations.forget()  # lost goods do not come back; their invoice is credited
            raise OrderStopped(
                OrderStatus.FAILED,
                f"shipment {', '.join(self.delivery.lost)} lost in transit; its invoice was "
                "credited",
            )
        ctx.moved(OrderStatus.DELIVERED)
        if not self.delivery.completion_written:
            await ctx.local(
                OrderActivities.set_status, ctx.completion(), summary="status: completed"
            )
        ctx.moved(OrderStatus.COMPLETED)

    async def _assess(self) -> tuple[Assessment, Prepared | None]:
        """Validate, price, check credit and route approvals. Since combined steps, a
        touchless order is also reserved and packed in that same step (`Prepared`)."""
        ctx = self.ctx
        # Orders started before combined steps existed replay their steps one by one;
        # orders from before "combined-steps-v2" replay their two markers, orders from
        # before `PIPELINE` 3 their one; new orders know it from their input, no marker.
        if ctx.inp.pipeline >= 3 or workflow.patched("combined-steps-v2"):
            ctx.combined = self.first_pass_undo = True
        else:
            ctx.combined = workflow.patched("combined-steps")
        assess = AssessRequest(
            order_id=ctx.order_id,
            routing=ctx.inp.routing,
            overdue_grace_days=ctx.inp.overdue_grace_days,
        )
        if not ctx.combined:
            assessment = await ctx.local(
                AssessmentActivities.assess_order,
                assess,
                summary=f"check {ctx.lines()}: credit, prices, approvals",
            )
            return assessment, None
        # Its lines are fixed from here, unless it turns out to need an approval first.
        ctx.lines_locked = True
        passed = await ctx.local(
            FulfilActivities.first_pass,
            FirstPassRequest(
                assess=assess,
                ship_partial=ctx.inp.allow_partial,
                pick=ctx.inp.warehouse_mode != "manual",
            ),
            summary=f"check {ctx.lines()} (credit, prices, approvals); reserve and pack "
            "them if no approval is needed",
        )
        ctx.lines_locked = passed.prepared is not None
        return passed.assessment, passed.prepared

    async def _stop(self, stop: OrderStopped) -> None:
        """Undo what took effect, newest first, each exactly once; then end the order."""
        self.ctx.failure = stop.reason
        await self.compensations.undo(stop, self.fulfilment.closed_waves + 1)
        await self.approval.withdraw(stop.reason)
        await self.ctx.end(stop)

    # ---- messages -------------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> OrderState:
        ctx = self.ctx
        return OrderState(
            order_id=ctx.order_id,
            status=ctx.status,
            awaiting_role=ctx.awaiting_role,
            pending_level=ctx.pending_level,
            approvals=ctx.approvals,
            tracking_numbers=[b.tracking_number for b in self.fulfilment.bookings],
            cancel_reason=ctx.cancel_request.reason if ctx.cancel_request else None,
            failure=ctx.failure,
            shipping_held=ctx.shipping_held,
            exception_on=ctx.exception_on,
            amendments=ctx.amendments,
        )

    @workflow.update(name="decide")
    async def decide(self, d: Decision) -> OrderState:
        """An approver's decision on the pending level; answers once it has been applied."""
        self.approval.decision = d
        # Answer with the state after the decision took effect: the next level is open, or
        # the order has moved on (approved, rejected).
        await workflow.wait_condition(self.approval.decided)
        return self.state()

    @decide.validator
    def _validate_decide(self, d: Decision) -> None:
        problem = self.approval.problem(d)
        if problem is not None:
            raise problem

    @workflow.signal(name="decide_signal")
    def decide_signal(self, d: Decision) -> None:
        """A decision sent straight to Temporal (its UI or CLI), past the API's tokens:
        it counts only as an ops override (see ApprovalChain.overridden). Who may signal at
        all is Temporal's own authorization (docs/roles.md). Kept registered for histories
        in flight; orders from before the patch keep the old rule when they replay."""
        if workflow.patched("decide-signal-override"):
            self.approval.overridden(d)
            return
        problem = self.approval.problem(d)
        if problem is not None:
            self.ctx.notes.append(
                f"ignored decision signal from {d.by} ({d.role}): {problem.message}"
            )
            return
        self.approval.decision = d

    @workflow.update(name="cancel")
    async def cancel(self, req: CancelRequest) -> OrderState:
        """Cancel and compensate; answers once the cancel took effect (the order ended, or
        its unshipped remainder was cancelled). The API answers 202 meanwhile."""
        ctx = self.ctx
        ctx.cancel_request = req

        def took_effect() -> bool:
            return ctx.finished or ctx.remainder_cancelled is not None

        if workflow.patched("cancel-waits-for-effect"):
            await workflow.wait_condition(took_effect)
        else:
            # Before: the Update failed after 30 s (TimeoutError), though the cancel went on.
            await workflow.wait_condition(took_effect, timeout=OLD_CANCEL_UPDATE_WAIT)
        return self.state()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        ctx = self.ctx
        if ctx.status in SHIPPED_OR_LATER:
            raise ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: it has shipped, so it cannot be "
                "cancelled; raise a return instead",
                type="NotCancellable",
            )
        if not can_cancel(ctx.status) or ctx.cancel_request is not None or ctx.finished:
            raise ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value} and cannot be cancelled",
                type="NotCancellable",
            )

    @workflow.update(name="retry_shipping")
    async def retry_shipping(self, req: CancelRequest) -> OrderState:
        """Ops: the carrier problem is fixed, book again (answers once the retry started)."""
        self.fulfilment.retry_shipping_by = req.by
        await workflow.wait_condition(
            lambda: self.fulfilment.retry_shipping_by is None or self.ctx.finished
        )
        return self.state()

    @retry_shipping.validator
    def _validate_retry(self, req: CancelRequest) -> None:
        if self.ctx.shipping_held is None or self.fulfilment.retry_shipping_by is not None:
            raise ApplicationError(
                f"order {self.ctx.order_id} is {self.ctx.status.value}: no carrier booking is "
                "on hold",
                type="NothingPending",
            )

    @workflow.update(name="amend")
    async def amend(self, a: Amendment) -> OrderState:
        """Change lines (before reservation), ship-to or requested date (before shipment).
        New lines are re-validated, re-priced and re-routed; answers once the order has
        settled on its new approval chain."""
        await self.amendments.apply(a)
        await workflow.wait_condition(lambda: not self.ctx.settling or self.ctx.finished)
        return self.state()

    @amend.validator
    def _validate_amend(self, a: Amendment) -> None:
        problem = self.amendments.busy() or self.amendments.problem(a)
        if problem is not None:
            raise problem

    @workflow.update(name="substitute")
    async def substitute(self, sub: Substitution) -> OrderState:
        """A backordered order's lines of one SKU take a substitute (workflows/
        substitution.py); answers once the order has reserved again with it."""
        await self.substitutions.apply(sub)
        return self.state()

    @substitute.validator
    def _validate_substitute(self, sub: Substitution) -> None:
        problem = self.substitutions.problem(sub)
        if problem is not None:
            raise problem

    @workflow.update(name="resolve_exception")
    async def resolve_exception(self, d: ExceptionDecision) -> OrderState:
        """Ops' decision on a carrier exception: `lost` credits that shipment's invoice and
        ends the order failed; `wait` keeps following the shipment."""
        self.delivery.exception_decision = d
        await workflow.wait_condition(
            lambda: self.delivery.exception_decision is None or self.ctx.finished
        )
        return self.state()

    @resolve_exception.validator
    def _validate_resolve(self, d: ExceptionDecision) -> None:
        if self.ctx.exception_on is None or self.delivery.exception_decision is not None:
            raise ApplicationError(
                f"order {self.ctx.order_id} is {self.ctx.status.value}: no carrier exception "
                "awaits a decision",
                type="NothingPending",
            )

    @workflow.update(name="confirm_pick")
    async def confirm_pick(self, c: PickConfirmation) -> OrderState:
        """The floor confirmed what it picked of this order (manual warehouse mode); answers
        once it is recorded (and any shortfall given back)."""
        floor = self.fulfilment.floor
        before = floor.picks_recorded
        floor.confirmation = c
        await workflow.wait_condition(lambda: floor.picks_recorded > before or self.ctx.finished)
        return self.state()

    @confirm_pick.validator
    def _validate_confirm_pick(self, c: PickConfirmation) -> None:
        floor = self.fulfilment.floor
        if floor.awaiting == "pick" and floor.confirmation is None:
            if floor.current is not None and floor.current.batch_id == c.batch_id:
                return
        if (
            self.ctx.started
            and not self.ctx.finished
            and floor.awaiting is None
            and self.ctx.inp.warehouse_mode == "manual"
            # between reserving and its list, or waiting to reserve it again (short pick)
            and self.ctx.status
            in (OrderStatus.BACKORDERED, OrderStatus.RESERVED, OrderStatus.PICKING)
        ):
            # Between two steps (the list was just written, the workflow not yet waiting).
            raise ApplicationError(
                f"order {self.ctx.order_id} is busy: try again in a moment", type="NotReady"
            )
        raise ApplicationError(
            f"order {self.ctx.order_id} is {self.ctx.status.value}: it waits for no pick "
            f"confirmation on pick list {c.batch_id}",
            type="NothingPending",
        )

    @workflow.signal(name="confirm_pick_later")
    def confirm_pick_later(self, c: PickConfirmation) -> None:
        """A pick confirmation the API could not hand over as an Update (the order was
        between two steps): durable in the history, taken when the order waits for it."""
        self.fulfilment.floor.take_early(c)

    @workflow.update(name="give_packages")
    async def give_packages(self, p: PackagesGiven) -> OrderState:
        """The packages the floor made of the picked goods (manual warehouse mode); answers
        once they are recorded (the carrier booking follows)."""
        floor = self.fulfilment.floor
        before = floor.packs_recorded
        floor.packages = p
        await workflow.wait_condition(lambda: floor.packs_recorded > before or self.ctx.finished)
        return self.state()

    @give_packages.validator
    def _validate_give_packages(self, p: PackagesGiven) -> None:
        floor = self.fulfilment.floor
        if floor.awaiting == "packages" and floor.packages is None:
            return
        if floor.awaiting == "pick" and floor.confirmation is not None:
            # The pick is being recorded (the database may already say packed).
            raise ApplicationError(
                f"order {self.ctx.order_id} is recording its pick: try again in a moment",
                type="NotReady",
            )
        raise ApplicationError(
            f"order {self.ctx.order_id} is {self.ctx.status.value}: it waits for no packages",
            type="NothingPending",
        )

    @workflow.signal(name="carrier_event")
    def carrier_event(self, event: DeliveryEvent) -> None:
        self.delivery.carrier_events.append(event)

    @workflow.signal(name="stock_replenished")
    def stock_replenished(self, ref: OrderRef) -> None:
        self.fulfilment.replenished = True
