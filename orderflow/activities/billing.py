"""Billing: the invoice and its receivable at shipment; a credit note as compensation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from orderflow.activities.base import DbActivities
from orderflow.db import repo
from orderflow.db.models import CreditNote, Customer, Invoice, Order, OrderLine, Receivable
from orderflow.domain.money import fmt, q2
from orderflow.domain.payloads import Compensation, OrderRef, StatusChange
from orderflow.domain.status import OrderStatus


def invoice_number(order_id: str) -> str:
    return "INV-" + order_id.removeprefix("SO-")


class BillingActivities(DbActivities):
    @activity.defn(name="billing.invoice")
    async def invoice(self, ref: OrderRef) -> str:
        """One invoice per order for what was shipped, and the receivable it opens."""
        async with self.tx() as s:
            order = await s.get_one(Order, ref.order_id)
            customer = await s.get_one(Customer, order.customer_code)
            lines = (
                await s.execute(
                    select(OrderLine.unit_price, OrderLine.shipped_qty, OrderLine.quantity).where(
                        OrderLine.order_id == order.id
                    )
                )
            ).all()
            shipped_value = sum((p * sq for p, sq, _ in lines), Decimal("0"))
            ordered_value = sum((p * q for p, _, q in lines), Decimal("0"))
            # The order discount is shared pro rata to what shipped.
            discount = (
                q2(order.order_discount * shipped_value / ordered_value)
                if ordered_value
                else Decimal(0)
            )
            amount = q2(shipped_value - discount)
            number = invoice_number(order.id)
            due = datetime.now(UTC).date() + timedelta(days=customer.payment_terms_days)
            fresh = await s.execute(
                insert(Invoice)
                .values(
                    number=number,
                    order_id=order.id,
                    customer_code=customer.code,
                    amount=amount,
                    due_date=due,
                )
                .on_conflict_do_nothing()
                .returning(Invoice.number)
            )
            if fresh.first() is not None:
                await s.execute(
                    insert(Receivable).values(
                        invoice_number=number,
                        customer_code=customer.code,
                        amount=amount,
                        open_amount=amount,
                        due_date=due,
                    )
                )
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=order.id,
                    status=OrderStatus.INVOICED,
                    step_key="invoiced",
                    detail=f"invoice {number} for {fmt(amount)} {order.currency}, due {due}",
                ),
            )
            return number

    @activity.defn(name="billing.credit_note")
    async def credit_note(self, comp: Compensation) -> None:
        """Compensation: a credit note for the whole invoice clears its open receivable."""
        async with self.tx() as s:
            inv = await s.scalar(select(Invoice).where(Invoice.order_id == comp.order_id))
            if inv is not None:
                fresh = await s.execute(
                    insert(CreditNote)
                    .values(
                        number="CN-" + inv.number.removeprefix("INV-"),
                        invoice_number=inv.number,
                        amount=inv.amount,
                        reason=comp.reason,
                    )
                    .on_conflict_do_nothing()
                    .returning(CreditNote.number)
                )
                if fresh.first() is not None:
                    inv.credited = True
                    await s.execute(
                        update(Receivable)
                        .where(Receivable.invoice_number == inv.number)
                        .values(open_amount=0)
                    )
            await repo.record_event(
                s,
                comp.order_id,
                "compensate:invoice",
                status=None,
                kind="compensation",
                detail=f"credit note for {inv.number}" if inv else "no invoice to credit",
            )
