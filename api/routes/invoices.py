"""Invoices: read one (amount, credits, payments, what is still open) and record a payment.

A payment lowers the invoice's receivable; the one that brings it to zero sets
`receivables.paid_at` (late when after the due date), which the `payment_record` scope of
routing rules reads (docs/approvals.md). Written once per invoice and `reference`: the
bank's reference is the idempotency key, so a repeated call records nothing new.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import CurrentUser, SessionDep, require
from api.errors import ProblemsError, responses
from db.models import CreditNote, Invoice, Payment, Receivable
from domain.base import Model
from domain.money import fmt
from domain.problems import Problem
from domain.types import Code40, Money, Printable, SaneDate

router = APIRouter(tags=["invoices"], responses=responses(404, 409))

Reference = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Printable()
]


class PaymentIn(Model):
    """POST /invoices/{number}/payments."""

    amount: Annotated[Money, Field(gt=0)]
    # The day the money arrived (default today): not in the future, not before the invoice.
    paid_on: SaneDate | None = None
    # The bank's reference: once per invoice (a repeat answers the payment already recorded).
    reference: Reference


class PaymentOut(Model):
    reference: str
    amount: Decimal
    paid_on: date
    recorded_by: str
    recorded_at: datetime


class InvoiceCreditOut(Model):
    number: str
    amount: Decimal
    reason: str
    return_id: str | None
    issued_at: datetime


class InvoiceOut(Model):
    number: str
    order_id: str
    customer_code: str
    amount: Decimal
    issued_at: datetime
    due_date: date
    credited: Decimal
    paid: Decimal
    open_amount: Decimal
    # The day the receivable reached zero by a payment; late: after the due date.
    paid_at: date | None
    late: bool
    credit_notes: list[InvoiceCreditOut]
    payments: list[PaymentOut]


async def load_invoice(s: AsyncSession, number: str) -> InvoiceOut:
    """The invoice with its credit notes, payments and receivable; 404 when unknown."""
    inv = await s.get(Invoice, number)
    if inv is None:
        raise HTTPException(404, f"no invoice {number}")
    rec = await s.scalar(select(Receivable).where(Receivable.invoice_number == number))
    credits = (
        await s.scalars(
            select(CreditNote)
            .where(CreditNote.invoice_number == number)
            .order_by(CreditNote.number)
        )
    ).all()
    payments = (
        await s.scalars(
            select(Payment).where(Payment.invoice_number == number).order_by(Payment.id)
        )
    ).all()
    paid_at = rec.paid_at if rec is not None else None
    return InvoiceOut(
        number=inv.number,
        order_id=inv.order_id,
        customer_code=inv.customer_code,
        amount=inv.amount,
        issued_at=inv.issued_at,
        due_date=inv.due_date,
        credited=sum((c.amount for c in credits), Decimal("0.00")),
        paid=sum((p.amount for p in payments), Decimal("0.00")),
        open_amount=rec.open_amount if rec is not None else Decimal("0.00"),
        paid_at=paid_at,
        late=paid_at is not None and paid_at > inv.due_date,
        credit_notes=[InvoiceCreditOut.model_validate(c, from_attributes=True) for c in credits],
        payments=[PaymentOut.model_validate(p, from_attributes=True) for p in payments],
    )


def _problem(field: str, code: str, message: str, status: int = 422) -> ProblemsError:
    return ProblemsError([Problem(loc=["body", field], code=code, message=message)], status)


async def record_payment(
    s: AsyncSession, number: str, body: PaymentIn, by: str, today: date
) -> bool:
    """Record a payment in the caller's transaction; False when this reference was recorded
    already with the same amount and day (nothing new). 409 when it would overpay, or the
    reference was used with another amount or day; 422 for a day out of range."""
    inv = await s.get(Invoice, number)
    if inv is None:
        raise HTTPException(404, f"no invoice {number}")
    # The receivable row lock serialises payments (and credits) of one invoice.
    rec = await s.scalar(
        select(Receivable).where(Receivable.invoice_number == number).with_for_update()
    )
    if rec is None:
        raise HTTPException(409, f"invoice {number} has no receivable to pay")
    paid_on = body.paid_on or today
    seen = await s.scalar(
        select(Payment).where(Payment.invoice_number == number, Payment.reference == body.reference)
    )
    if seen is not None:
        if seen.amount == body.amount and (body.paid_on is None or seen.paid_on == paid_on):
            return False
        raise _problem(
            "reference",
            "reference_reused",
            f"reference {body.reference!r} was recorded on invoice {number} already, for "
            f"{fmt(seen.amount)} paid on {seen.paid_on.isoformat()}",
            409,
        )
    if paid_on > today:
        raise _problem(
            "paid_on", "in_future", f"paid_on {paid_on.isoformat()} is after today ({today})"
        )
    issued = inv.issued_at.date()
    if paid_on < issued:
        raise _problem(
            "paid_on",
            "before_invoice",
            f"paid_on {paid_on.isoformat()} is before invoice {number} was issued ({issued})",
        )
    if body.amount > rec.open_amount:
        raise _problem(
            "amount",
            "overpayment",
            f"amount {fmt(body.amount)} is more than the {fmt(rec.open_amount)} still open on "
            f"invoice {number}",
            409,
        )
    s.add(
        Payment(
            invoice_number=number,
            amount=body.amount,
            paid_on=paid_on,
            reference=body.reference,
            recorded_by=by,
        )
    )
    rec.open_amount = rec.open_amount - body.amount
    if rec.open_amount == 0:
        rec.paid_at = paid_on
    await s.flush()
    return True


@router.get("/invoices/{number}")
async def get_invoice(number: Code40, session: SessionDep) -> InvoiceOut:
    """The invoice: amount, credit notes, payments and the open amount."""
    return await load_invoice(session, number)


@router.post(
    "/invoices/{number}/payments",
    status_code=201,
    dependencies=[Depends(require("credit_controller", "ops"))],
)
async def pay_invoice(
    number: Code40, body: PaymentIn, session: SessionDep, user: CurrentUser
) -> JSONResponse:
    """Record money received: 201 and the invoice; the same reference again: 200, nothing
    new. Never below zero: an amount above what is open is a 409 naming it."""
    today = datetime.now(UTC).date()
    if session.in_transaction():
        await session.rollback()
    async with session.begin():
        fresh = await record_payment(session, number, body, user.name, today)
    session.expunge_all()
    out = await load_invoice(session, number)
    return JSONResponse(status_code=201 if fresh else 200, content=out.model_dump(mode="json"))
