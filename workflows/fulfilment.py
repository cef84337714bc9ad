"""Fulfilment: reserve, pick, pack, book the carrier, ship and invoice, one shipment after
another. Shortages wait in backordered for stock (or ship partially when allowed); a
carrier that refuses for good holds the order in packed for ops."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

from workflows.compensation import Compensations
from workflows.context import OrderContext, OrderStopped, activity_name, step_failed
from workflows.floor import Floor, Picked
from workflows.policies import CARRIER_HEARTBEAT, CARRIER_HOLD, CARRIER_RETRY, CARRIER_TIMEOUT
from workflows.text import one_line, plural, waiting_for

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.fulfil import FulfilActivities
    from activities.inventory import InventoryActivities
    from activities.shipping import ShippingActivities
    from activities.warehouse import WarehouseActivities
    from domain.fulfilment import Prepared, PrepareRequest
    from domain.orders import OrderRef
    from domain.shipping import Booking, Parcel, ShipmentRecord, ShipmentRequest
    from domain.status import OrderStatus


class Fulfilment:
    """The order's shipments: the bookings made, the waves already with the customer."""

    def __init__(self, ctx: OrderContext, compensations: Compensations) -> None:
        self.ctx = ctx
        self.compensations = compensations
        self.replenished = False
        self.retry_shipping_by: str | None = None
        self.bookings: list[Booking] = []
        # Partial shipment: shipments whose invoice is posted stay with the customer.
        self.closed_waves = 0
        # Manual warehouse mode (pinned in the input when the order started; absent: auto).
        self.floor = Floor(ctx)
        self._last_reserved_all = False
        # The backorder loop waits between two reservations (`parked`); a substitution
        # (workflows/substitution.py) changes the lines only then, and `held` keeps the loop
        # from reserving again until it is done.
        self.parked = False
        self.held = False

    async def run(self, first: Prepared | None = None) -> list[Booking]:
        """Ship the order, in as many shipments as stock allows; the bookings to follow.
        `first`: the first pass already reserved and packed the first shipment."""
        shipment_no = 1
        while True:
            try:
                if await self._ship(shipment_no, first):
                    break
            except OrderStopped as stop:
                if not self.closed_waves:
                    raise
                # Part of the order is with the customer: only the remainder is undone.
                await self.compensations.undo(stop, self.closed_waves + 1)
                self.ctx.remainder_cancelled = stop.reason
                await self.ctx.note(
                    "remainder-cancelled",
                    f"remainder cancelled ({stop.reason}); the {self.closed_waves} shipment(s) "
                    "sent stay with the customer",
                )
                break
            shipment_no += 1
            first = None
        return self.bookings

    async def _ship(self, n: int, first: Prepared | None = None) -> bool:
        """Reserve, pick, pack, book, invoice one shipment; True when the order is all sent
        (False: a partial shipment went out and the rest follows)."""
        ctx = self.ctx
        ref = OrderRef(order_id=ctx.order_id, shipment_no=n)
        prepared = await self._reserve(ref, first)
        reserved, packed = prepared.reserved, prepared.packed
        parcels: list[Parcel] = []
        all_sent = reserved.fully_reserved
        if ctx.inp.warehouse_mode == "manual":
            picked = await self._by_hand(ref)
            packed, parcels = picked.packed, picked.parcels
            all_sent = picked.all_sent
        elif packed is None:  # steps one by one (orders from before combined steps)
            await ctx.local(
                WarehouseActivities.create_pick_list, ref, summary=f"pick list for shipment {n}"
            )
            self.compensations.took_effect("pick_list")
            ctx.moved(OrderStatus.PICKING)
            ctx.checkpoint()
            packed = await ctx.local(WarehouseActivities.pack, ref, summary=f"pack shipment {n}")
        else:
            self.compensations.once("pick_list")  # the first pass may have registered it
        ctx.moved(OrderStatus.PACKED)
        ctx.checkpoint()

        # A booking can take effect at the carrier before we hear back: its undo is due
        # from the moment we ask. A cancel interrupts a booking that keeps retrying.
        self.compensations.took_effect("shipment")
        booking = await self._book(
            ShipmentRequest(
                order_id=ctx.order_id, shipment_no=n, packages=packed.packages, parcels=parcels
            )
        )
        # A cancel accepted in the same workflow task as the booking's result: honour it
        # before the goods leave. The booking is undone by the "shipment" compensation
        # (the carrier cancels it even though we never recorded it).
        if ctx.cancel_request is not None and workflow.patched("checkpoint-after-booking"):
            ctx.checkpoint()
        record = ShipmentRecord(
            order_id=ctx.order_id, shipment_no=n, booking=booking, packages=packed.packages
        )
        tracking = booking.tracking_number
        if ctx.combined:
            await ctx.local(
                FulfilActivities.ship_and_invoice,
                record,
                summary=f"ship {tracking} (shipment {n}) and invoice it",
            )
            self.bookings.append(booking)
        else:
            await ctx.local(
                ShippingActivities.record_shipment,
                record,
                summary=f"ship {tracking} (shipment {n})",
            )
            self.bookings.append(booking)
            ctx.moved(OrderStatus.SHIPPED)
            await ctx.local(BillingActivities.invoice, ref, summary=f"invoice shipment {n}")
        self.compensations.took_effect("invoice")
        ctx.moved(OrderStatus.INVOICED)
        if all_sent:
            return True
        # Shipped and billed: this part is the customer's now, whatever happens to the rest.
        self.closed_waves = n
        self.compensations.forget()
        return False

    async def _by_hand(self, ref: OrderRef) -> _ByHand:
        """Manual mode: people pick and pack the reserved shipment. A short pick without
        partial shipment gives the shortfall back and reserves the shipment again (its
        usual rules: backordered until stock is there), then it is picked again."""
        attempt = 1
        while True:
            self.compensations.once("pick_list")
            picked = await self.floor.pick_and_pack(ref, attempt)
            if picked is not None:
                return _ByHand(picked, all_sent=self.reserved_all and not picked.short)
            attempt += 1
            await self._reserve(ref)

    @property
    def reserved_all(self) -> bool:
        return self._last_reserved_all

    async def _reserve(self, ref: OrderRef, first: Prepared | None = None) -> Prepared:
        """Reserve stock (and, in one step with it, pick and pack what can go); when short,
        wait in backordered for a replenishment signal (or, when partial shipment is
        allowed, go with what is reserved)."""
        ctx, inp = self.ctx, self.ctx.inp
        waited = timedelta(0)
        limit = timedelta(seconds=inp.backorder_max_seconds)
        recheck = timedelta(seconds=inp.backorder_recheck_seconds)
        alert_after = timedelta(seconds=inp.backorder_alert_seconds)
        alerted = False
        while True:
            if first is not None:
                prepared, first = first, None
            elif ctx.combined:
                prepared = await ctx.local(
                    FulfilActivities.prepare,
                    PrepareRequest(
                        ref=ref,
                        ship_partial=inp.allow_partial,
                        pick=inp.warehouse_mode != "manual",
                    ),
                    summary=f"reserve {ctx.lines()}, pick and pack shipment {ref.shipment_no}",
                )
            else:
                reserved = await ctx.local(
                    InventoryActivities.reserve,
                    ref,
                    summary=f"reserve {ctx.lines()} (shipment {ref.shipment_no})",
                )
                prepared = Prepared(reserved=reserved)
            result = prepared.reserved
            self._last_reserved_all = result.fully_reserved
            ctx.short = one_line(waiting_for(result), 1000) or None
            self.compensations.once("reservation")
            if result.fully_reserved:
                ctx.moved(OrderStatus.RESERVED)
                return prepared
            ctx.moved(OrderStatus.BACKORDERED)
            if inp.allow_partial and result.ready_units > 0:
                return prepared
            if waited >= limit:
                await ctx.alert(
                    "backorder_timeout",
                    "critical",
                    f"order {ctx.order_id} waited {waited} for stock: " + waiting_for(result),
                )
                raise OrderStopped(
                    OrderStatus.CANCELLED,
                    f"backorder not filled within {limit}: short " + waiting_for(result),
                )
            if waited >= alert_after and not alerted:
                alerted = True
                await ctx.alert(
                    "stuck_backordered",
                    "warning",
                    f"order {ctx.order_id} has been backordered for {waited}, longer than "
                    f"the expected {alert_after}: short " + waiting_for(result),
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
            self.parked = True
            try:
                await ctx.wait(
                    lambda: self.replenished, step, timer=f"backorder: {then} ({ctx.short})"
                )
            finally:
                self.parked = False
            if self.held:  # no wait otherwise: orders without substitutions replay as before
                await workflow.wait_condition(lambda: not self.held)
                ctx.checkpoint()  # a cancel accepted meanwhile: no new reservation
            waited += workflow.now() - start

    async def _book(self, req: ShipmentRequest) -> Booking:
        """Book the carrier. When it refuses for good, the order waits in `packed` for ops
        to retry (after fixing the cause) or cancel, instead of failing outright."""
        ctx = self.ctx
        attempt = 1
        while True:
            try:
                return await self._interruptible(
                    req,
                    f"book carrier for shipment {req.shipment_no} "
                    f"({plural(req.packages, 'package')})",
                )
            except OrderStopped as stop:
                if stop.status != OrderStatus.FAILED or not workflow.patched("carrier-hold"):
                    raise
                ctx.shipping_held = stop.reason
                await ctx.alert(
                    "carrier_failed",
                    "critical",
                    f"order {ctx.order_id}: {stop.reason}; retry with POST /orders/"
                    f"{ctx.order_id}/retry-shipping or cancel it",
                    key=f"carrier_failed:{attempt}",
                )
                retried = await ctx.wait(
                    lambda: self.retry_shipping_by is not None,
                    CARRIER_HOLD,
                    timer=f"carrier hold: fail the order unless ops retry shipment "
                    f"{req.shipment_no} or cancel",
                )
                if not retried:
                    raise
                await ctx.note(
                    f"retry-shipping:{attempt}",
                    f"{self.retry_shipping_by} asked to retry the booking",
                )
                ctx.shipping_held, self.retry_shipping_by = None, None
                attempt += 1

    async def _interruptible(self, req: ShipmentRequest, summary: str) -> Booking:
        """The carrier booking, which a cancel request can cut short (between or during
        attempts): the order must not wait out the carrier's retries to be cancelled."""
        ctx = self.ctx
        ctx.step = one_line(summary)
        ctx.publish()
        handle = workflow.start_activity_method(
            ShippingActivities.book,
            req,
            start_to_close_timeout=CARRIER_TIMEOUT,
            heartbeat_timeout=CARRIER_HEARTBEAT,
            retry_policy=CARRIER_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=ctx.step,
        )
        await workflow.wait_condition(lambda: handle.done() or ctx.cancel_request is not None)
        ctx.step = None
        if not handle.done():
            handle.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
            ctx.checkpoint()
        try:
            return await handle
        except ActivityError as err:
            raise step_failed(activity_name(ShippingActivities.book), err) from err


class _ByHand:
    """A shipment picked and packed by people, and whether it takes the whole order."""

    def __init__(self, picked: Picked, all_sent: bool) -> None:
        self.packed = picked.packed
        self.parcels = picked.parcels
        self.all_sent = all_sent
