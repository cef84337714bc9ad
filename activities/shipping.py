"""Shipping: a carrier interface, the simulated carrier, and the shipment records."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import func, select, text, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.base import DbActivities
from activities.billing import credit_invoice
from db import repo, stock
from db.models import Invoice, OrderLine, Reservation, Shipment
from db.session import SessionFactory
from domain.fulfilment import Compensation
from domain.orders import StatusChange
from domain.shipping import (
    Booking,
    DeliveryEvent,
    ShipmentLoss,
    ShipmentRecord,
    ShipmentRequest,
    TrackRequest,
    TrackResult,
)
from domain.status import OrderStatus, wave_key
from services.config import Settings

T = TypeVar("T")

# The goods of a shipment leave, in one statement: the shipment row, once (a retried step
# finds it and changes nothing else); the order's active reservations consumed by it; their
# lines' quantities moved from reserved to shipped. Answers the reservations consumed
# (db/stock.py then writes their units out).
_SHIPPED = text(
    """
WITH shipment AS (
    INSERT INTO shipments (order_id, shipment_no, tracking_number, carrier, status, packages,
                           booked_at)
    VALUES (:order, :no, :tracking, :carrier, 'booked', :packages, :booked_at)
    ON CONFLICT ON CONSTRAINT uq_shipments_order_no DO NOTHING
    RETURNING id
), consumed AS (
    UPDATE reservations SET status = 'consumed', shipment_no = :no
    WHERE order_id = :order AND status = 'active' AND EXISTS (SELECT 1 FROM shipment)
    RETURNING sku, quantity, order_line_id, id
), lines AS (
    UPDATE order_lines l
    SET shipped_qty = l.shipped_qty + c.quantity, reserved_qty = l.reserved_qty - c.quantity
    FROM (SELECT order_line_id, sum(quantity) AS quantity FROM consumed GROUP BY order_line_id) c
    WHERE l.id = c.order_line_id
)
SELECT sku, quantity, order_line_id, id FROM consumed
"""
)

# What the carrier reported, on the shipment; answers its order and how many of the
# order's shipments are still on their way (this one as it is now, the others as they
# were when the statement began).
_TRACKED = text(
    """
UPDATE shipments s SET status = :status, delivered_at = :at
WHERE s.tracking_number = :tracking
RETURNING s.order_id,
    (SELECT count(*) FROM shipments o
     WHERE o.order_id = s.order_id AND o.id <> s.id
       AND o.status NOT IN ('delivered', 'cancelled', 'lost'))
    + CASE WHEN s.status NOT IN ('delivered', 'cancelled', 'lost') THEN 1 ELSE 0 END
"""
)


class Carrier(Protocol):
    name: str

    async def book(self, req: ShipmentRequest, attempt: int) -> Booking: ...
    async def track(self, req: TrackRequest) -> TrackResult: ...
    async def cancel(self, order_id: str, shipment_no: int) -> None:
        """Cancel the booking made for (order, shipment number); a no-op if there is none."""
        ...


class SimulatedCarrier:
    """A carrier without a network: deterministic tracking numbers (so a retried booking is
    the same booking) and delivery once `transit_seconds` have passed since booking."""

    name = "simcarrier"

    def __init__(
        self,
        transit_seconds: float,
        mode: str = "normal",
        delay_seconds: float = 0.0,
        ledger: Path | None = None,
    ):
        self.transit = timedelta(seconds=transit_seconds)
        self.mode = mode
        self.delay = delay_seconds
        # The carrier's own record of every call it got (crash tests count bookings here).
        self.ledger = ledger
        # (order id, shipment no) of every booking call cut short by a cancellation.
        self.abandoned: list[tuple[str, int]] = []

    @staticmethod
    def tracking_number(order_id: str, shipment_no: int) -> str:
        digest = hashlib.sha256(f"{order_id}/{shipment_no}".encode()).hexdigest()[:12]
        return f"SIM{digest.upper()}"

    async def book(self, req: ShipmentRequest, attempt: int) -> Booking:
        if self.mode == "fail_permanent":
            raise ApplicationError(
                "carrier refused the booking", type="CarrierRejected", non_retryable=True
            )
        if self.mode == "fail_transient" and attempt < 3:
            raise RuntimeError(f"carrier unavailable (attempt {attempt})")
        if self.mode == "down":  # the booking service is down until someone fixes it
            raise RuntimeError(f"carrier booking service unavailable (attempt {attempt})")
        # The carrier has the request from here on: it books, whatever happens to the caller.
        self._record("book", req.order_id, req.shipment_no)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            # The activity was cancelled (the order was, or the attempt timed out): a real
            # carrier's request would be abandoned here, so the simulation says it was.
            self.abandoned.append((req.order_id, req.shipment_no))
            raise
        return Booking(
            tracking_number=self.tracking_number(req.order_id, req.shipment_no),
            carrier=self.name,
            booked_at=datetime.now(UTC),
        )

    async def track(self, req: TrackRequest) -> TrackResult:
        if self.mode == "exception":
            return TrackResult(status="exception", at=datetime.now(UTC))
        due = req.booked_at + self.transit
        if datetime.now(UTC) >= due:
            return TrackResult(status="delivered", at=due)
        return TrackResult(status="in_transit")

    async def cancel(self, order_id: str, shipment_no: int) -> None:
        self._record("cancel", order_id, shipment_no)

    def _record(self, call: str, order_id: str, shipment_no: int) -> None:
        """One line per call, appended and flushed at once (O_APPEND: whole lines even with
        several worker processes), so a SIGKILL right after loses nothing."""
        if self.ledger is not None:
            tracking = self.tracking_number(order_id, shipment_no)
            line = f"{call} {order_id} {shipment_no} {tracking}\n"
            with open(self.ledger, "a") as out:
                out.write(line)


async def _heartbeat_while(coro_factory: Callable[[], Awaitable[T]], interval: float = 1.0) -> T:
    """Run a carrier call while heartbeating, so a dead worker is noticed in seconds. The
    call runs as a task of its own, so it is cancelled with the activity (a cancelled
    order, a timed-out attempt): it must not go on booking for an order that gave up."""
    task = asyncio.ensure_future(coro_factory())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # let the carrier call unwind before the activity ends
            if not task.cancelled():
                task.exception()  # retrieved: the activity's cancellation is what it reports


class ShippingActivities(DbActivities):
    def __init__(self, sessions: SessionFactory, settings: Settings, carrier: Carrier):
        super().__init__(sessions, settings)
        self.carrier = carrier

    @activity.defn(name="shipping.book")
    async def book(self, req: ShipmentRequest) -> Booking:
        """Book the carrier (the outside world: a normal activity with heartbeats)."""
        attempt = activity.info().attempt
        return await _heartbeat_while(lambda: self.carrier.book(req, attempt))

    @activity.defn(name="shipping.track")
    async def track(self, req: TrackRequest) -> TrackResult:
        return await _heartbeat_while(lambda: self.carrier.track(req))

    @activity.defn(name="shipping.record_shipment")
    async def record_shipment(self, rec: ShipmentRecord) -> None:
        """The goods leave: reservations are consumed and on-hand stock goes down, once."""
        async with self.tx() as s:
            consumed = (
                await s.execute(
                    _SHIPPED,
                    {
                        "order": rec.order_id,
                        "no": rec.shipment_no,
                        "tracking": rec.booking.tracking_number,
                        "carrier": rec.booking.carrier,
                        "packages": rec.packages,
                        "booked_at": rec.booking.booked_at,
                    },
                )
            ).all()
            for sku, qty, _, reservation_id in sorted(consumed):
                await stock.ship(s, sku, qty, key=f"ship:reservation:{reservation_id}")
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=rec.order_id,
                    status=OrderStatus.SHIPPED,
                    step_key=f"shipped:{rec.shipment_no}",
                    detail=f"{rec.booking.carrier} {rec.booking.tracking_number}, "
                    f"{rec.packages} package(s)",
                ),
            )

    @activity.defn(name="shipping.record_delivery")
    async def record_delivery(self, event: DeliveryEvent) -> None:
        async with self.tx() as s:
            found = (
                await s.execute(
                    _TRACKED,
                    {
                        "tracking": event.tracking_number,
                        "status": event.status,
                        "at": event.at if event.status == "delivered" else None,
                    },
                )
            ).first()
            if found is None:
                raise ApplicationError(
                    f"no shipment {event.tracking_number}",
                    type="UnknownShipment",
                    non_retryable=True,
                )
            order_id, open_left = found
            if event.status == "delivered" and not open_left:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=order_id,
                        status=OrderStatus.DELIVERED,
                        step_key=f"delivered:{event.tracking_number}",
                        detail=f"{event.tracking_number} delivered at "
                        f"{(event.at or datetime.now(UTC)).isoformat(timespec='seconds')}",
                    ),
                )
            else:
                await repo.record_event(
                    s,
                    order_id,
                    f"carrier:{event.tracking_number}:{event.status}",
                    status=None,
                    kind="carrier",
                    detail=f"carrier reports {event.status} for {event.tracking_number}"
                    + (
                        f"; {open_left} shipment(s) still on their way"
                        if event.status == "delivered" and open_left
                        else ""
                    ),
                )

    @activity.defn(name="shipping.cancel_shipment")
    async def cancel_shipment(self, comp: Compensation) -> None:
        """Compensation: cancel the booking with the carrier (even one we never heard back
        about) and put any goods that left back on hand."""
        async with self.tx() as s:
            rows = (
                await s.scalars(
                    select(Shipment).where(
                        Shipment.order_id == comp.order_id,
                        Shipment.shipment_no >= comp.from_shipment,
                        Shipment.status != "cancelled",
                    )
                )
            ).all()
            for shipment_no in sorted({comp.from_shipment, *(r.shipment_no for r in rows)}):
                await self.carrier.cancel(comp.order_id, shipment_no)
            for shipment in rows:
                shipment.status = "cancelled"
            returned = (
                await s.execute(
                    update(Reservation)
                    .where(
                        Reservation.order_id == comp.order_id,
                        Reservation.status == "consumed",
                        Reservation.shipment_no >= comp.from_shipment,
                    )
                    .values(status="released", released_at=func.now())
                    .returning(
                        Reservation.sku,
                        Reservation.quantity,
                        Reservation.order_line_id,
                        Reservation.id,
                    )
                )
            ).all()
            for sku, qty, line_id, reservation_id in sorted(returned):
                await stock.return_shipped(s, sku, qty, key=f"return:reservation:{reservation_id}")
                await s.execute(
                    update(OrderLine)
                    .where(OrderLine.id == line_id)
                    .values(shipped_qty=OrderLine.shipped_qty - qty)
                )
            await repo.record_event(
                s,
                comp.order_id,
                wave_key("compensate:shipment", comp.from_shipment),
                status=None,
                kind="compensation",
                detail=f"{len(rows)} shipment(s) cancelled with the carrier",
            )

    @activity.defn(name="shipping.mark_lost")
    async def mark_lost(self, loss: ShipmentLoss) -> None:
        """Ops called a shipment lost after a carrier exception: the customer does not pay
        for goods that never arrived (its invoice is credited); the goods stay written out."""
        async with self.tx() as s:
            shipment = (
                await s.scalars(
                    select(Shipment).where(Shipment.tracking_number == loss.tracking_number)
                )
            ).one()
            shipment.status = "lost"
            invoice = await s.scalar(
                select(Invoice).where(
                    Invoice.order_id == loss.order_id,
                    Invoice.shipment_no == shipment.shipment_no,
                )
            )
            reason = f"shipment {loss.tracking_number} lost in transit"
            if invoice is not None:
                await credit_invoice(s, invoice, reason)
            await repo.record_event(
                s,
                loss.order_id,
                f"lost:{loss.tracking_number}",
                status=None,
                kind="carrier",
                actor=loss.by,
                detail=f"{reason} (ops: {loss.by}"
                + (f", {loss.comment}" if loss.comment else "")
                + ")"
                + (f"; credit note for {invoice.number}" if invoice is not None else ""),
            )
