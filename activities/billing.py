"""Billing: the invoice and its receivable at shipment; a credit note as compensation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import (
    CreditNote,
    Invoice,
    Order,
    Receivable,
)
from domain.fulfilment import Compensation
from domain.money import fmt, q2
from domain.orders import OrderRef, StatusChange
from domain.status import OrderStatus, wave_key

# The order (locked) and what its invoice needs of the customer.
_ORDER = text(
    """
SELECT o.customer_code, o.total, o.order_discount, o.currency, c.payment_terms_days
FROM orders o JOIN customers c ON c.code = o.customer_code
WHERE o.id = :order
FOR UPDATE OF o
"""
)

# In one round trip: the invoice if it was posted before (a retried step), the value the
# shipment took out, what is still to ship and the order's value, and what the shipments
# before it were billed.
_INVOICE_FACTS = text(
    """
SELECT i.amount, i.due_date, shipped.value AS shipped_value, lines.outstanding,
       lines.ordered_value, billed.amount AS billed
FROM (SELECT coalesce(sum(l.unit_price * r.quantity), 0) AS value
      FROM reservations r JOIN order_lines l ON l.id = r.order_line_id
      WHERE r.order_id = :order AND r.status = 'consumed' AND r.shipment_no = :no) shipped
CROSS JOIN (SELECT coalesce(sum(quantity - shipped_qty), 0) AS outstanding,
                   coalesce(sum(unit_price * quantity), 0) AS ordered_value
            FROM order_lines WHERE order_id = :order) lines
CROSS JOIN (SELECT coalesce(sum(amount), 0) AS amount
            FROM invoices WHERE order_id = :order AND shipment_no < :no) billed
LEFT JOIN invoices i ON i.number = :number
"""
)

# The invoice and the receivable it opens, in one statement.
_POST = text(
    """
WITH inv AS (
    INSERT INTO invoices (number, order_id, customer_code, shipment_no, amount, due_date,
                          credited)
    VALUES (:number, :order, :customer, :no, :amount, :due, false)
    RETURNING number
)
INSERT INTO receivables (invoice_number, customer_code, amount, open_amount, due_date)
SELECT number, :customer, :amount, :amount, :due FROM inv
"""
)


def _amount(order: Row[*tuple[Any, ...]], facts: Row[*tuple[Any, ...]]) -> Decimal:
    """What the shipment's invoice bills: its goods less their share of the order discount;
    the invoice that completes the order bills what is left of the total."""
    if facts.outstanding == 0:
        return q2(order.total - Decimal(facts.billed))
    shipped_value, ordered_value = Decimal(facts.shipped_value), Decimal(facts.ordered_value)
    discount = (
        q2(order.order_discount * shipped_value / ordered_value) if ordered_value else Decimal(0)
    )
    return q2(shipped_value - discount)


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
            order = (await s.execute(_ORDER, {"order": ref.order_id})).one()
            # Read once the lock is held: an invoice another attempt wrote is seen.
            facts = (
                await s.execute(
                    _INVOICE_FACTS,
                    {"order": ref.order_id, "number": number, "no": ref.shipment_no},
                )
            ).one()
            if facts.amount is None:
                amount = _amount(order, facts)
                due = datetime.now(UTC).date() + timedelta(days=order.payment_terms_days)
                await s.execute(
                    _POST,
                    {
                        "number": number,
                        "order": ref.order_id,
                        "customer": order.customer_code,
                        "no": ref.shipment_no,
                        "amount": amount,
                        "due": due,
                    },
                )
            else:
                amount, due = facts.amount, facts.due_date
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=ref.order_id,
                    status=OrderStatus.INVOICED,
                    step_key=wave_key("invoiced", ref.shipment_no),
                    detail=f"invoice {number} for {fmt(amount)} {order.currency}, due {due}",
                ),
            )
            return number

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
