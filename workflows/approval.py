"""The approval chain: one level after another, each with its SLA (reminder, escalation to
a backup role, timeout), routed again whenever an amendment changes what the order needs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.context import OrderContext, OrderStopped, Rerouted
from workflows.text import utc

with workflow.unsafe.imports_passed_through():
    from activities.approvals import ApprovalActivities
    from activities.orders import OrderActivities
    from domain.approvals import ApprovalLevel, Decision, DecisionRecord
    from domain.status import OrderStatus, wave_key

# Who a decision sent straight to Temporal is recorded as (see ApprovalChain.overridden).
OVERRIDE_BY = "override via Temporal signal"


class ApprovalChain:
    """The order's approvals: the decision awaited, the levels still to route, and what
    each role has approved so far."""

    def __init__(self, ctx: OrderContext) -> None:
        self.ctx = ctx
        self.decision: Decision | None = None
        self.reroute: list[ApprovalLevel] | None = None
        self.round = 1
        # Per routed role: the largest order total it approved (covers no larger total).
        self.approved_for: dict[str, Decimal] = {}

    # ---- messages ---------------------------------------------------------------------

    def problem(self, d: Decision) -> ApplicationError | None:
        """Why a decision cannot be taken now (None: it can)."""
        ctx = self.ctx
        if ctx.awaiting_role is None or self.decision is not None or ctx.finished:
            return ApplicationError(
                f"order {ctx.order_id} is {ctx.status.value}: nothing awaits a decision",
                type="NothingPending",
            )
        if ctx.amending or self.reroute is not None:
            return ApplicationError(
                f"order {ctx.order_id} is being amended: its approvals are re-evaluated, "
                "decide on the amended order",
                type="AmendmentInProgress",
            )
        if d.role != ctx.awaiting_role:
            return ApplicationError(
                f"level {ctx.pending_level} needs role {ctx.awaiting_role}, not {d.role}",
                type="WrongRole",
            )
        return None

    def decided(self) -> bool:
        """The decision took effect: the next level is open, or the order moved on."""
        return self.decision is None and (
            self.ctx.awaiting_role is not None or self.ctx.status != OrderStatus.AWAITING_APPROVAL
        )

    def overridden(self, d: Decision) -> None:
        """A decision sent straight to Temporal, past the API's tokens: its `by` and `role`
        are whatever the sender typed, so it counts only as an ops override, recorded as
        such (decided by OVERRIDE_BY, the claimed sender in the comment and the timeline)."""
        ctx = self.ctx
        claimed = f"{d.by} ({d.role})" if d.role else d.by
        problem = self.problem(d.model_copy(update={"role": ctx.awaiting_role}))
        if problem is not None:
            ctx.notes.append(f"ignored decision signal sent as {claimed}: {problem.message}")
            return
        ctx.notes.append(
            f"{d.decision} of level {ctx.pending_level} ({ctx.awaiting_role}) by ops "
            f"override via Temporal signal, sent as {claimed}"
        )
        self.decision = Decision(
            decision=d.decision,
            comment=(f"{d.comment} " if d.comment else "") + f"[sent as {claimed}]",
            by=OVERRIDE_BY,
            role=ctx.awaiting_role or "",
        )

    def uncovered(self, levels: list[ApprovalLevel]) -> list[ApprovalLevel]:
        """The levels the amended order still needs: an approval already given covers its
        role up to the total it was given for, never a larger one. Numbered after the
        levels the order has had, so its history stays whole."""
        total = self.ctx.total
        needed = [
            lvl
            for lvl in levels
            if not (
                lvl.role in self.approved_for
                and total is not None
                and self.approved_for[lvl.role] >= total
            )
        ]
        first = max((a.level for a in self.ctx.approvals), default=0) + 1
        return [lvl.model_copy(update={"level": first + i}) for i, lvl in enumerate(needed)]

    # ---- the stage ----------------------------------------------------------------------

    async def run(self, levels: list[ApprovalLevel]) -> None:
        """Approvals, routed again whenever an amendment changes what the order needs."""
        ctx = self.ctx
        while True:
            if levels:
                try:
                    for lvl in levels:
                        await self._level(lvl)
                except Rerouted:
                    levels = self._take_reroute()
                    continue
            # First-pass approval was written by the assessment; anything else is written here.
            if levels or self.round > 1:
                await ctx.local(
                    OrderActivities.set_status,
                    ctx.change(
                        OrderStatus.APPROVED,
                        wave_key("approved", self.round),
                        "all approval levels approved"
                        if levels
                        else "amended: the approvals already given cover it (or none is needed)",
                    ),
                    summary="status: approved",
                )
            ctx.moved(OrderStatus.APPROVED)
            if ctx.amending:  # an amendment started before reservation: let it land
                await workflow.wait_condition(lambda: not ctx.amending)
            if self.reroute is None:
                break
            levels = self._take_reroute()
        ctx.lines_locked = True
        ctx.settling = False

    async def withdraw(self, reason: str) -> None:
        """The order stopped: the level still open is cancelled."""
        ctx = self.ctx
        if ctx.awaiting_role is not None and ctx.pending_level is not None:
            await self._close(ctx.pending_level, ctx.awaiting_role, "cancelled", None, reason, "")

    def _take_reroute(self) -> list[ApprovalLevel]:
        levels, self.reroute = self.reroute or [], None
        self.round += 1
        return levels

    async def _level(self, lvl: ApprovalLevel) -> None:
        """Wait for one level with its SLA: reminder, escalation to a backup role, timeout."""
        ctx = self.ctx
        sla = ctx.inp.sla
        role = lvl.role
        await self._open(lvl.level, role, lvl.reason)
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
            fires, ctx.sla_later = workflow.now(), []
            for later, later_seconds in phases[i:]:
                fires += timedelta(seconds=max(later_seconds, 0))
                if later != phase:
                    ctx.sla_later.append(f"{timers[later]} at {utc(fires)}")
            if await ctx.wait(
                lambda: self.decision is not None or self.reroute is not None,
                timedelta(seconds=max(seconds, 0)),
                timer=timers[phase],
            ):
                break
            if phase == "reminder":
                await ctx.notify(
                    role,
                    f"reminder: order {ctx.order_id} waits for your approval (level {lvl.level})",
                    f"remind:{lvl.level}:{role}",
                )
            elif phase == "escalation":
                backup = sla.escalate_to.get(role, "admin")
                await ctx.alert(
                    "approval_escalated",
                    "warning",
                    f"order {ctx.order_id} level {lvl.level} not decided by {role} within "
                    f"{timedelta(seconds=sla.escalation_seconds)}; escalated to {backup}",
                    key=f"escalated:{lvl.level}",
                )
                self._record(lvl.level, role, "escalated", None, "", lvl.reason)
                role = backup
                await self._open(lvl.level, role, f"escalated: {lvl.reason}")
            else:
                await self._timed_out(lvl, role)
                return
        if self.reroute is not None:
            await self._close(
                lvl.level, role, "superseded", None, "order amended before a decision", lvl.reason
            )
            raise Rerouted()
        d = self.decision
        assert d is not None
        status = "approved" if d.decision == "approve" else "rejected"
        if status == "approved":
            self._approved(lvl.role)
        await self._close(lvl.level, role, status, d.by, d.comment, lvl.reason)
        self.decision = None
        if status == "rejected":
            raise OrderStopped(
                OrderStatus.REJECTED,
                f"rejected by {d.by} ({role}) at level {lvl.level}"
                + (f": {d.comment}" if d.comment else ""),
            )

    async def _timed_out(self, lvl: ApprovalLevel, role: str) -> None:
        """No decision before the level's final timeout: approve or reject, as routed."""
        await self.ctx.alert(
            "approval_timeout",
            "critical",
            f"order {self.ctx.order_id} level {lvl.level} timed out waiting for {role}",
            key=f"timeout:{lvl.level}",
        )
        if lvl.on_timeout == "approve":
            self._approved(lvl.role)
            await self._close(
                lvl.level, role, "approved", "system", "auto-approved at timeout", lvl.reason
            )
            return
        await self._close(
            lvl.level, role, "timed_out", "system", "no decision before the timeout", lvl.reason
        )
        raise OrderStopped(OrderStatus.REJECTED, f"approval level {lvl.level} ({role}) timed out")

    def _approved(self, role: str) -> None:
        """Remember the total a role approved: an amendment above it needs the role again."""
        total = self.ctx.total
        if total is not None:
            self.approved_for[role] = max(self.approved_for.get(role, total), total)

    async def _open(self, level: int, role: str, reason: str) -> None:
        ctx = self.ctx
        rec = DecisionRecord(
            order_id=ctx.order_id, level=level, role=role, status="pending", reason=reason
        )
        await ctx.local(
            ApprovalActivities.open_level, rec, summary=f"open approval level {level} for {role}"
        )
        self._record(level, role, "pending", None, "", reason)
        ctx.moved(OrderStatus.AWAITING_APPROVAL, awaiting_role=role, level=level)
        ctx.settling = False  # an amendment's new chain is open: its caller gets its answer
        await ctx.notify(
            role,
            f"order {ctx.order_id} needs your approval (level {level}): {reason}",
            f"request:{level}:{role}",
        )

    async def _close(
        self, level: int, role: str, status: str, by: str | None, comment: str, reason: str
    ) -> None:
        ctx = self.ctx
        rec = self._decision_record(level, role, status, by, comment, reason)
        await ctx.local(
            ApprovalActivities.record_decision,
            rec,
            summary=f"approval level {level} ({role}): {status}" + (f" by {by}" if by else ""),
        )
        self._record(level, role, status, by, comment, reason)
        ctx.awaiting_role = None
        ctx.pending_level = None
        ctx.sla_later = []

    def _record(
        self, level: int, role: str, status: str, by: str | None, comment: str, reason: str
    ) -> None:
        """Keep the level's latest state in the workflow (the API's `approvals`)."""
        approvals = [a for a in self.ctx.approvals if not (a.level == level and a.role == role)]
        approvals.append(self._decision_record(level, role, status, by, comment, reason))
        self.ctx.approvals = approvals

    def _decision_record(
        self, level: int, role: str, status: str, by: str | None, comment: str, reason: str
    ) -> DecisionRecord:
        return DecisionRecord(
            order_id=self.ctx.order_id,
            level=level,
            role=role,
            status=status,  # type: ignore[arg-type]  # the callers pass the Literal's values
            decided_by=by,
            comment=comment,
            reason=reason,
            amount=self.ctx.total if status == "approved" else None,
        )
