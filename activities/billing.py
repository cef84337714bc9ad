"""Billing: the invoice and its receivable at shipment; a credit note as compensation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import (
    CreditNote,
    Customer,
    Invoice,
    Order,
    OrderLine,
    Receivable,
    Reservation,
)
from domain.fulfilment import Compensation
from domain.money import fmt, q2
from domain.orders import OrderRef, StatusChange
from domain.status import OrderStatus, wave_key


def invoice_number(order_id: str, shipment_no: int = 1) -> str:
    base = "INV-" + order_id.removeprefix("SO-")
    return base if shipment_no == 1 else f"{base}-{shipment_no}"


class BillingActivities(DbActivities):
    @activity.defn(name="billing.invoice")
    async def invoice(self, ref: OrderRef) -> str:
        """One invoice per shipment for what it took out, and the receivable it opens. The
        order discount is shared pro rata; the invoice that completes the order bills the
        rest, so the invoices add up to the order total to the cent."""
        number = invoice_number(ref.order_id, ref.shipment_no)
        async with self.tx() as s:
            # The order row lock serialises the invoices of one order.
            order = await s.get_one(Order, ref.order_id, with_for_update=True)
            customer = await s.get_one(Customer, order.customer_code)
            existing = await s.get(Invoice, number)
            if existing is None:
                amount = await self._amount(s, order, ref.shipment_no)
                due = datetime.now(UTC).date() + timedelta(days=customer.payment_terms_days)
                s.add(
                    Invoice(
                        number=number,
                        order_id=order.id,
                        customer_code=customer.code,
                        shipment_no=ref.shipment_no,
                        amount=amount,
                        due_date=due,
                    )
                )
                await s.flush()
                s.add(
                    Receivable(
                        invoice_number=number,
                        customer_code=customer.code,
                        amount=amount,
                        open_amount=amount,
                        due_date=due,
                    )
                )
            else:
                amount, due = existing.amount, existing.due_date
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=order.id,
                    status=OrderStatus.INVOICED,
                    step_key=wave_key("invoiced", ref.shipment_no),
                    detail=f"invoice {number} for {fmt(amount)} {order.currency}, due {due}",
                ),
            )
            return number

    @staticmethod
    async def _amount(s: AsyncSession, order: Order, shipment_no: int) -> Decimal:
        shipped_value = (
            await s.execute(
                select(func.coalesce(func.sum(OrderLine.unit_price * Reservation.quantity), 0))
                .select_from(Reservation)
                .join(OrderLine, OrderLine.id == Reservation.order_line_id)
                .where(
                    Reservation.order_id == order.id,
                    Reservation.status == "consumed",
                    Reservation.shipment_no == shipment_no,
                )
            )
        ).scalar_one()
        outstanding, ordered_value = (
            await s.execute(
                select(
                    func.coalesce(func.sum(OrderLine.quantity - OrderLine.shipped_qty), 0),
                    func.coalesce(func.sum(OrderLine.unit_price * OrderLine.quantity), 0),
                ).where(OrderLine.order_id == order.id)
            )
        ).one()
        if outstanding == 0:
            billed = (
                await s.execute(
                    select(func.coalesce(func.sum(Invoice.amount), 0)).where(
                        Invoice.order_id == order.id, Invoice.shipment_no < shipment_no
                    )
                )
            ).scalar_one()
            return q2(order.total - Decimal(billed))
        discount = (
            q2(order.order_discount * Decimal(shipped_value) / Decimal(ordered_value))
            if ordered_value
            else Decimal(0)
        )
        return q2(Decimal(shipped_value) - discount)

    @activity.defn(name="billing.credit_note")
    async def credit_note(self, comp: Compensation) -> None:
        """Compensation: a credit note for each invoice of the undone shipments clears its
        open receivable."""
        async with self.tx() as s:
            invoices = (
                await s.scalars(
                    select(Invoice)
                    .where(
                        Invoice.order_id == comp.order_id,
                        Invoice.shipment_no >= comp.from_shipment,
                    )
                    .order_by(Invoice.shipment_no)
                )
            ).all()
            for inv in invoices:
                await credit_invoice(s, inv, comp.reason)
            await repo.record_event(
                s,
                comp.order_id,
                wave_key("compensate:invoice", comp.from_shipment),
                status=None,
                kind="compensation",
                detail="credit note for " + ", ".join(i.number for i in invoices)
                if invoices
                else "no invoice to credit",
            )


async def credit_invoice(s: AsyncSession, inv: Invoice, reason: str) -> bool:
    """A credit note for what is left of the invoice (returns may have credited part of
    it already), once; it clears the open receivable. The order's row lock queues it behind a
    return's credit (activities/returns.py takes the same lock) so the two never both credit
    the same remainder."""
    await s.execute(select(Order.id).where(Order.id == inv.order_id).with_for_update())
    returned = await s.scalar(
        select(func.coalesce(func.sum(CreditNote.amount), 0)).where(
            CreditNote.invoice_number == inv.number, CreditNote.return_id.is_not(None)
        )
    )
    left = Decimal(inv.amount) - Decimal(returned or 0)
    if left > 0:
        fresh = await s.execute(
            insert(CreditNote)
            .values(
                number="CN-" + inv.number.removeprefix("INV-"),
                invoice_number=inv.number,
                amount=left,
                reason=reason,
            )
            .on_conflict_do_nothing()
            .returning(CreditNote.number)
        )
        if fresh.first() is None:
            return False
    elif inv.credited:
        return False
    inv.credited = True
    await s.execute(
        update(Receivable).where(Receivable.invoice_number == inv.number).values(open_amount=0)
    )
    return True
