"""Returns (RMA): status, receipt and inspection, the credit note, and their undoing.

Every step only touches PostgreSQL (ReturnWorkflow runs them as local activities) and is
idempotent by a key PostgreSQL enforces: the order's timeline event per return and status,
a receipt row per return, SKU and condition (stock moves only with its first write), a
credit note per return and invoice.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.base import DbActivities
from db import repo, stock
from db.models import (
    CreditNote,
    Invoice,
    Order,
    OrderLine,
    Receivable,
    Return,
    ReturnLineRow,
    ReturnReceipt,
)
from db.notices import queue_notice
from domain.money import fmt
from domain.notices import RETURN_APPROVED, RETURN_CREDITED, RETURN_REFUSED, return_event_key
from domain.returns import (
    RETURN_FINAL,
    Receipt,
    ReturnStatus,
    ReturnStep,
    RmaRef,
    credit_value,
)

# How far a full return's credit may be moved to match what is left on the invoices.
ROUNDING_DRIFT = Decimal("0.05")


def credit_note_number(invoice_number: str, rma_id: str) -> str:
    return "CN-" + invoice_number.removeprefix("INV-") + "-R" + rma_id.removeprefix("RMA-")


async def order_event(s: AsyncSession, step: ReturnStep, key: str | None = None) -> bool:
    """The return's step on the ORDER's timeline (kind `return`), once per key."""
    detail = f"return {step.rma_id} {step.status.value}" + (
        f": {step.detail}" if step.detail else ""
    )
    return await repo.record_event(
        s,
        step.order_id,
        key or f"return:{step.rma_id}:{step.status.value}",
        status=None,
        kind="return",
        actor=step.actor,
        detail=detail,
    )


class ReturnActivities(DbActivities):
    @activity.defn(name="returns.set_status")
    async def set_status(self, step: ReturnStep) -> None:
        """Move the return to a status with its event on the order; a return that has
        ended never moves again, and a replayed step writes nothing new."""
        async with self.tx() as s:
            if not await order_event(s, step):
                return
            # The customer hears of the decision once, in the transaction that records it.
            event = {
                ReturnStatus.APPROVED: RETURN_APPROVED,
                ReturnStatus.REFUSED: RETURN_REFUSED,
            }.get(step.status)
            if event is not None:
                await queue_notice(s, step.order_id, event, return_event_key(event, step.rma_id))
            values: dict[str, object] = {
                "status": step.status.value,
                "awaiting_role": step.awaiting_role,
                "updated_at": func.now(),
            }
            if step.approval_reason is not None:
                values["approval_reason"] = step.approval_reason
            if step.status in (ReturnStatus.APPROVED, ReturnStatus.REFUSED):
                values["decided_by"] = step.actor
                values["decision_comment"] = step.comment
            if step.status == ReturnStatus.CANCELLED:
                values["failure_reason"] = step.comment
            await s.execute(
                update(Return)
                .where(
                    Return.id == step.rma_id,
                    Return.status.not_in([st.value for st in RETURN_FINAL]),
                )
                .values(values)
            )

    @activity.defn(name="returns.note")
    async def note(self, step: ReturnStep) -> None:
        """A remark on the order's timeline about the return (a reminder sent), once; the
        return's status does not move."""
        async with self.tx() as s:
            await order_event(s, step, key=f"return:{step.rma_id}:note:reminder")

    @activity.defn(name="returns.receive")
    async def receive(self, receipt: Receipt) -> None:
        """The goods are in: restocked units back to available stock, the rest to
        quarantine or scrap. Each (SKU, condition) is written once; stock moves with it."""
        totals: dict[tuple[str, str], int] = {}
        for ln in receipt.lines:
            totals[(ln.sku, ln.condition)] = totals.get((ln.sku, ln.condition), 0) + ln.quantity
        async with self.tx() as s:
            for (sku, condition), qty in sorted(totals.items()):
                fresh = await s.execute(
                    insert(ReturnReceipt)
                    .values(
                        return_id=receipt.rma_id,
                        sku=sku,
                        condition=condition,
                        quantity=qty,
                        received_by=receipt.by,
                    )
                    .on_conflict_do_nothing(constraint="uq_return_receipts_step")
                    .returning(ReturnReceipt.id)
                )
                if fresh.first() is None:
                    continue
                if condition == "restock":
                    await stock.return_shipped(
                        s, sku, qty, key=f"rma:{receipt.rma_id}:{sku}:restock"
                    )
                else:
                    await stock.hold_returned(s, sku, condition, qty)
                await s.execute(
                    update(ReturnLineRow)
                    .where(ReturnLineRow.return_id == receipt.rma_id, ReturnLineRow.sku == sku)
                    .values(received_qty=ReturnLineRow.received_qty + qty)
                )
            summary = ", ".join(f"{q} x {sku} to {c}" for (sku, c), q in sorted(totals.items()))
            step = ReturnStep(
                rma_id=receipt.rma_id,
                order_id=receipt.order_id,
                status=ReturnStatus.RECEIVED,
                detail=summary,
                actor=receipt.by,
            )
            await self.set_status(step)

    @activity.defn(name="returns.credit")
    async def credit(self, ref: RmaRef) -> list[str]:
        """A credit note for what came back, against the order's invoices (oldest first,
        each up to what is left uncredited on it); each lowers its open receivable.
        Written once per return and invoice: a retry answers the notes already written."""
        async with self.tx() as s:
            # The order row lock serialises credits (and their sums) per order.
            order = await s.get_one(Order, ref.order_id, with_for_update=True)
            existing = (
                await s.scalars(
                    select(CreditNote.number)
                    .where(CreditNote.return_id == ref.rma_id)
                    .order_by(CreditNote.number)
                )
            ).all()
            if existing:
                return list(existing)
            amount = await self._credit_amount(s, order, ref.rma_id)
            notes = await self._allocate(s, order, ref.rma_id, amount)
            await s.execute(
                update(Return).where(Return.id == ref.rma_id).values(credited_amount=amount)
            )
            step = ReturnStep(
                rma_id=ref.rma_id,
                order_id=ref.order_id,
                status=ReturnStatus.CREDITED,
                detail=f"credit note {', '.join(notes)} for {fmt(amount)} {order.currency}"
                if notes
                else "nothing came back: no credit note",
            )
            await self.set_status(step)
            if notes:
                await queue_notice(
                    s,
                    ref.order_id,
                    RETURN_CREDITED,
                    return_event_key(RETURN_CREDITED, ref.rma_id),
                )
            return notes

    @staticmethod
    async def _credit_amount(s: AsyncSession, order: Order, rma_id: str) -> Decimal:
        received = dict(
            (
                await s.execute(
                    select(ReturnReceipt.sku, func.sum(ReturnReceipt.quantity))
                    .where(ReturnReceipt.return_id == rma_id)
                    .group_by(ReturnReceipt.sku)
                )
            ).all()
        )
        prices = dict(
            (
                await s.execute(
                    select(ReturnLineRow.sku, ReturnLineRow.unit_price).where(
                        ReturnLineRow.return_id == rma_id
                    )
                )
            ).all()
        )
        shipped, ordered_units, ordered_value = (
            await s.execute(
                select(
                    func.coalesce(func.sum(OrderLine.shipped_qty), 0),
                    func.coalesce(func.sum(OrderLine.quantity), 0),
                    func.coalesce(func.sum(OrderLine.unit_price * OrderLine.quantity), 0),
                ).where(OrderLine.order_id == order.id)
            )
        ).one()
        amount = credit_value(
            {k: int(v) for k, v in received.items()},
            prices,
            order.order_discount,
            Decimal(ordered_value),
        )
        # Everything the order ever shipped has now come back: credit exactly what is left
        # on its invoices, so a full return leaves nothing open to the cent.
        returned_all = await s.scalar(
            select(func.coalesce(func.sum(ReturnReceipt.quantity), 0))
            .join(Return, Return.id == ReturnReceipt.return_id)
            .where(Return.order_id == order.id)
        )
        # (Only the cents the pro-rata rounding of several returns can drift by: anything
        # else is a real mismatch, refused by _allocate.)
        if shipped == ordered_units and int(returned_all or 0) >= int(shipped):
            left = sum((left for _, left in await _uncredited(s, order.id)), Decimal(0))
            if abs(left - amount) <= ROUNDING_DRIFT:
                amount = left
        return amount

    @staticmethod
    async def _allocate(s: AsyncSession, order: Order, rma_id: str, amount: Decimal) -> list[str]:
        if amount <= 0:
            return []
        invoices = await _uncredited(s, order.id)
        if sum((left for _, left in invoices), Decimal(0)) < amount:
            raise ApplicationError(
                f"return {rma_id}: {fmt(amount)} to credit but only "
                f"{fmt(sum((left for _, left in invoices), Decimal(0)))} is left uncredited on "
                f"the invoices of order {order.id}",
                type="CreditExceedsInvoices",
                non_retryable=True,
            )
        notes, rest = [], amount
        for inv, left in invoices:
            part = min(rest, left)
            if part <= 0:
                continue
            number = credit_note_number(inv.number, rma_id)
            s.add(
                CreditNote(
                    number=number,
                    invoice_number=inv.number,
                    amount=part,
                    reason=f"return {rma_id}",
                    return_id=rma_id,
                )
            )
            await s.execute(
                update(Receivable)
                .where(Receivable.invoice_number == inv.number)
                .values(open_amount=func.greatest(Receivable.open_amount - part, 0))
            )
            if part == left:
                inv.credited = True
            notes.append(number)
            rest -= part
        await s.flush()
        return notes

    @activity.defn(name="returns.undo_receipt")
    async def undo_receipt(self, ref: RmaRef) -> None:
        """Compensation when the credit fails for good: restocked units leave available
        stock again for quarantine (until someone sorts the credit out), once per receipt."""
        async with self.tx() as s:
            rows = (
                await s.scalars(
                    select(ReturnReceipt)
                    .where(
                        ReturnReceipt.return_id == ref.rma_id,
                        ReturnReceipt.condition == "restock",
                        ReturnReceipt.undone.is_(False),
                    )
                    .with_for_update()
                )
            ).all()
            moved = []
            for row in rows:
                n = await stock.unrestock_to_quarantine(
                    s, row.sku, row.quantity, key=f"rma:{ref.rma_id}:{row.sku}:unrestock"
                )
                row.undone = True
                moved.append(f"{n} of {row.quantity} x {row.sku}")
            await order_event(
                s,
                ReturnStep(
                    rma_id=ref.rma_id,
                    order_id=ref.order_id,
                    status=ReturnStatus.CANCELLED,
                    detail="restock undone, to quarantine: " + (", ".join(moved) or "nothing"),
                ),
                key=f"return:{ref.rma_id}:compensate:restock",
            )


async def _uncredited(s: AsyncSession, order_id: str) -> list[tuple[Invoice, Decimal]]:
    """The order's invoices, oldest first, with what is left uncredited on each."""
    credited = (
        select(func.coalesce(func.sum(CreditNote.amount), 0))
        .where(CreditNote.invoice_number == Invoice.number)
        .correlate(Invoice)
        .scalar_subquery()
    )
    rows = (
        await s.execute(
            select(Invoice, Invoice.amount - credited)
            .where(Invoice.order_id == order_id)
            .order_by(Invoice.shipment_no)
        )
    ).all()
    return [(inv, Decimal(left)) for inv, left in rows]
