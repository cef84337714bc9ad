"""The order's current details in the Temporal UI: its status and why it waits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

from workflows.text import utc

with workflow.unsafe.imports_passed_through():
    from domain.status import FINAL_STATUSES, OrderStatus

if TYPE_CHECKING:
    from workflows.context import OrderContext


def current_details(ctx: OrderContext) -> str:
    """Markdown: the status and why the order waits (who for, until when, on what)."""
    head = f"**{ctx.status.value.replace('_', ' ')}**"
    why: list[str] = []
    if ctx.status in FINAL_STATUSES:
        head += f": {ctx.failure}" if ctx.failure else ""
    elif ctx.awaiting_role is not None:
        head = f"**awaiting approval**: level {ctx.pending_level}"
        head += f", role **{ctx.awaiting_role}**"
        why += [
            f"- reason: {a.reason}"
            for a in ctx.approvals
            if a.status == "pending" and a.level == ctx.pending_level and a.reason
        ][-1:]
    elif ctx.status == OrderStatus.BACKORDERED and ctx.short:
        why.append(f"- short: {ctx.short}")
    if ctx.shipping_held is not None:
        head = "**packed, carrier booking on hold**"
        why.append(f"- {ctx.shipping_held}")
        why.append(
            f"- ops: POST /orders/{ctx.order_id}/retry-shipping once the cause is fixed, "
            "or cancel the order"
        )
    if ctx.exception_on is not None:
        why.append(
            f"- carrier exception on {ctx.exception_on}: ops decide lost or wait "
            f"(POST /orders/{ctx.order_id}/carrier-exception)"
        )
    if ctx.remainder_cancelled is not None:
        why.append(f"- remainder cancelled: {ctx.remainder_cancelled}")
    if ctx.cancel_request is not None and not ctx.finished:
        why.append(f"- cancel requested by {ctx.cancel_request.by}: undoing what took effect")
    if ctx.amending or ctx.settling:
        why.append("- amendment in progress: its approvals are being re-evaluated")
    if ctx.step is not None:
        why.append(f"- running: {ctx.step}")
    if ctx.timer is not None and not ctx.finished:
        why.append(f"- next: {ctx.timer[0]} at {utc(ctx.timer[1])}")
        if ctx.awaiting_role is not None:
            why += [f"- then: {later}" for later in ctx.sla_later]
    if ctx.amendments and ctx.total is not None:
        why.append(f"- amended {ctx.amendments}x; total now {ctx.total:,.2f}")
    return "\n".join([head, *why])
