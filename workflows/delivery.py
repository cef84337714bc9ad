"""Delivery: follow every shipment until the carrier confirms it delivered, or ops call it
lost after a carrier exception. The carrier's webhook wakes the order at once; between
webhooks it asks the carrier, less and less often."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.context import OrderContext
from workflows.policies import MAX_DELIVERY_POLL
from workflows.text import listed

with workflow.unsafe.imports_passed_through():
    from activities.fulfil import FulfilActivities
    from activities.shipping import ShippingActivities
    from domain.shipping import (
        Booking,
        DeliveryClose,
        DeliveryEvent,
        ExceptionDecision,
        ShipmentLoss,
        TrackRequest,
    )


class Delivery:
    """What the carrier said, what ops decided on an exception, and what was lost."""

    def __init__(self, ctx: OrderContext) -> None:
        self.ctx = ctx
        self.carrier_events: list[DeliveryEvent] = []
        self.exception_decision: ExceptionDecision | None = None
        self.lost: list[str] = []
        # The last delivery wrote the order's completion in the same step.
        self.completion_written = False

    async def follow(self, bookings: list[Booking]) -> None:
        """Wait until every shipment is delivered (or lost)."""
        ctx = self.ctx
        pending = {b.tracking_number: b for b in bookings}
        poll = timedelta(seconds=ctx.inp.delivery_poll_seconds)
        late = workflow.now() + timedelta(seconds=ctx.inp.delivery_alert_seconds)
        while pending:
            await ctx.wait(
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
                await ctx.alert(
                    "delivery_late",
                    "warning",
                    f"order {ctx.order_id}: {', '.join(pending)} not confirmed delivered "
                    f"within {timedelta(seconds=ctx.inp.delivery_alert_seconds)} of booking",
                )
            if self.exception_decision is not None:
                await self._decide_exception(pending)
                continue
            if not self.carrier_events:
                await self._track(pending)
            while self.carrier_events and pending:
                await self._record(self.carrier_events.pop(0), pending)

    async def _track(self, pending: dict[str, Booking]) -> None:
        """No webhook came: ask the carrier about each shipment still out."""
        for booking in list(pending.values()):
            tracked = await self.ctx.carrier(
                ShippingActivities.track,
                TrackRequest(tracking_number=booking.tracking_number, booked_at=booking.booked_at),
                summary=f"track {booking.tracking_number} with {booking.carrier}",
            )
            if tracked.status in ("delivered", "exception"):
                self.carrier_events.append(
                    DeliveryEvent(
                        tracking_number=booking.tracking_number,
                        status=tracked.status,
                        at=tracked.at,
                    )
                )

    async def _record(self, event: DeliveryEvent, pending: dict[str, Booking]) -> None:
        """Record what the carrier reported; an exception waits for ops' decision."""
        ctx = self.ctx
        if (
            ctx.combined
            and event.status == "delivered"
            and list(pending) == [event.tracking_number]
            and not self.lost
        ):
            # The last delivery completes the order, in the same step.
            await ctx.local(
                FulfilActivities.deliver_and_complete,
                DeliveryClose(event=event, completion=ctx.completion()),
                summary=f"record delivery of {event.tracking_number}; complete the order",
            )
            self.completion_written = True
        else:
            await ctx.local(
                ShippingActivities.record_delivery,
                event,
                summary=f"record {event.status} of {event.tracking_number}",
            )
        if event.status == "delivered":
            pending.pop(event.tracking_number, None)
            if ctx.exception_on == event.tracking_number:
                ctx.exception_on = None  # the carrier found it after all
        elif event.status == "exception" and event.tracking_number in pending:
            ctx.exception_on = event.tracking_number
            await ctx.alert(
                "carrier_exception",
                "warning",
                f"carrier reports an exception on {event.tracking_number}; if the "
                f"goods are lost: POST /orders/{ctx.order_id}/carrier-exception "
                '{"action": "lost"} credits the shipment and ends the order',
                key=f"carrier_exception:{event.tracking_number}",
            )

    async def _decide_exception(self, pending: dict[str, Booking]) -> None:
        ctx = self.ctx
        d, tracking = self.exception_decision, ctx.exception_on
        assert d is not None
        if tracking is None:  # the carrier delivered it while the decision was on its way
            await ctx.note(
                f"exception-moot:{workflow.uuid4()}",
                f"{d.by} decided '{d.action}', but the shipment was delivered meanwhile",
            )
        elif d.action == "lost":
            await ctx.local(
                ShippingActivities.mark_lost,
                ShipmentLoss(
                    order_id=ctx.order_id, tracking_number=tracking, by=d.by, comment=d.comment
                ),
                summary=f"{tracking} lost (by {d.by}): credit its invoice",
            )
            pending.pop(tracking, None)
            self.lost.append(tracking)
        else:
            await ctx.note(
                f"exception-wait:{tracking}:{workflow.uuid4()}",
                f"{d.by} keeps waiting for {tracking}" + (f": {d.comment}" if d.comment else ""),
            )
        ctx.exception_on = None
        self.exception_decision = None
