"""Compensation: what undoes each step that took effect, run newest first, exactly once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.context import OrderContext, OrderStopped
from workflows.policies import (
    CARRIER_HEARTBEAT,
    CARRIER_TIMEOUT,
    COMPENSATION_RETRY,
    DB_TIMEOUT,
)
from workflows.text import one_line

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.inventory import InventoryActivities
    from activities.shipping import ShippingActivities
    from activities.warehouse import WarehouseActivities
    from domain.fulfilment import Compensation

Undo = Callable[[Any, Compensation], Awaitable[Any]]

# Undo of each step that takes effect: the activity that undoes it, and whether it is a
# local activity (PostgreSQL only) or a normal one (the carrier, the outside world).
UNDO: dict[str, tuple[Undo, bool]] = {
    "reservation": (InventoryActivities.release, True),
    "pick_list": (WarehouseActivities.cancel_pick_list, True),
    "shipment": (ShippingActivities.cancel_shipment, False),
    "invoice": (BillingActivities.credit_note, True),
}
UNDO_SUMMARY = {
    "reservation": "release the reserved stock",
    "pick_list": "cancel the pick list",
    "shipment": "cancel the carrier booking",
    "invoice": "credit the invoice",
}


class Compensations:
    """The steps of the order that took effect and are still the business's to undo."""

    def __init__(self, ctx: OrderContext) -> None:
        self.ctx = ctx
        self.steps: list[str] = []

    def took_effect(self, step: str) -> None:
        """`step` (a key of UNDO) took effect, or may have: its undo is due from now."""
        self.steps.append(step)

    def once(self, step: str) -> None:
        """Like took_effect, for a step that repeats (another look at a backorder)."""
        if step not in self.steps:
            self.steps.append(step)

    def forget(self) -> None:
        """Nothing so far is to be undone (it is the customer's now, or lost for good)."""
        self.steps.clear()

    async def undo(self, stop: OrderStopped, from_shipment: int = 1) -> None:
        """Run the registered compensations, newest first (shipments already with the
        customer after a partial shipment, those before `from_shipment`, are not touched)."""
        ctx = self.ctx
        for step in reversed(self.steps):
            fn, local = UNDO[step]
            comp = Compensation(
                order_id=ctx.order_id,
                step=step,  # type: ignore[arg-type]  # a key of UNDO: the Literal's values
                reason=stop.reason,
                from_shipment=from_shipment,
            )
            ctx.step = one_line(f"undo: {UNDO_SUMMARY[step]} ({stop.status.value})")
            try:
                await self._run(fn, local, comp)
            except ActivityError as err:
                # The database refused this undo for good (a retryable one retries for
                # ever): the others must still run, and a person must look at this one.
                cause = getattr(err.cause, "message", "") or str(err)
                await ctx.alert(
                    "compensation_failed",
                    "critical",
                    one_line(f"order {ctx.order_id}: could not {UNDO_SUMMARY[step]}: {cause}"),
                    key=f"compensation-failed:{ctx.order_id}:{step}",
                )
            ctx.step = None
        self.steps.clear()

    async def _run(self, fn: Any, local: bool, comp: Compensation) -> None:
        """One undo step: database steps as local activities, the carrier's as an activity."""
        ctx = self.ctx
        if local:
            ctx.show()
            await workflow.execute_local_activity_method(
                fn,
                comp,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=COMPENSATION_RETRY,
                summary=ctx.step,
            )
            return
        ctx.publish()
        await workflow.execute_activity_method(
            fn,
            comp,
            start_to_close_timeout=CARRIER_TIMEOUT,
            heartbeat_timeout=CARRIER_HEARTBEAT,
            retry_policy=COMPENSATION_RETRY,
            summary=ctx.step,
        )
