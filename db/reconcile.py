"""Books against shelves: check the stock and money invariants, and book cycle counts.

Stock, per SKU (read in one statement, so a movement committing meanwhile is seen whole or
not at all):
- on hand = the sum of the SKU's movements in the ledger (db/stock.py books every change);
- on hand + shipped = received + adjustments (counts, corrections, the opening balance);
- the received and shipped counters = their movements in the ledger;
- reserved = the SKU's active reservations.
Money: every receivable matches its invoice, every invoice has its receivable, and every
shipment that left (not cancelled) has its invoice once the grace period has passed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import stock
from db.models import (
    Invoice,
    OrderLine,
    Product,
    Receivable,
    Reservation,
    Shipment,
    Stock,
    StockCount,
    StockMovement,
)
from domain.reconcile import (
    MAX_PROBLEMS,
    CountIn,
    CountLineOut,
    CountOut,
    Problem,
    Report,
)
from domain.types import INT4_MAX


def _ledger() -> Select:
    m = StockMovement

    def of(*kinds: str) -> ColumnElement[int]:
        return func.coalesce(func.sum(m.quantity).filter(m.kind.in_(kinds)), 0)

    return select(
        m.sku.label("sku"),
        func.coalesce(func.sum(m.quantity), 0).label("total"),
        of(stock.RECEIPT).label("receipts"),
        of(stock.SHIPMENT, stock.RETURN).label("out"),
        of(*stock.ADJUSTING_KINDS).label("adjustments"),
    ).group_by(m.sku)


def _held() -> Select:
    r = Reservation
    return (
        select(r.sku.label("sku"), func.sum(r.quantity).label("held"))
        .where(r.status == "active")
        .group_by(r.sku)
    )


async def _stock_problems(s: AsyncSession, skus: Sequence[str]) -> tuple[int, list[Problem]]:
    ledger = _ledger().subquery()
    held = _held().subquery()
    q = (
        select(
            Stock.sku,
            Stock.on_hand,
            Stock.reserved,
            Stock.received,
            Stock.shipped,
            func.coalesce(ledger.c.total, 0),
            func.coalesce(ledger.c.receipts, 0),
            func.coalesce(ledger.c.out, 0),
            func.coalesce(ledger.c.adjustments, 0),
            func.coalesce(held.c.held, 0),
        )
        .outerjoin(ledger, ledger.c.sku == Stock.sku)
        .outerjoin(held, held.c.sku == Stock.sku)
        .order_by(Stock.sku)
    )
    if skus:
        q = q.where(Stock.sku.in_(skus))
    rows = (await s.execute(q)).all()
    problems: list[Problem] = []
    for sku, on_hand, reserved, received, shipped, total, receipts, out, adjusted, held_ in rows:
        if on_hand != total:
            problems.append(
                Problem(
                    check="ledger",
                    sku=sku,
                    expected=str(total),
                    actual=str(on_hand),
                    detail=f"{sku}: on hand is {on_hand} but its movements add up to {total} "
                    f"({on_hand - total:+d} unit(s) no movement explains)",
                )
            )
        if on_hand + shipped != received + adjusted:
            problems.append(
                Problem(
                    check="balance",
                    sku=sku,
                    expected=str(received + adjusted),
                    actual=str(on_hand + shipped),
                    detail=f"{sku}: on hand {on_hand} + shipped {shipped} = "
                    f"{on_hand + shipped}, but received {received} + adjustments {adjusted} "
                    f"= {received + adjusted}",
                )
            )
        if received != receipts:
            problems.append(
                Problem(
                    check="received",
                    sku=sku,
                    expected=str(receipts),
                    actual=str(received),
                    detail=f"{sku}: received says {received}, the ledger's receipts {receipts}",
                )
            )
        if shipped != -out:
            problems.append(
                Problem(
                    check="shipped",
                    sku=sku,
                    expected=str(-out),
                    actual=str(shipped),
                    detail=f"{sku}: shipped says {shipped}, the ledger's shipments less "
                    f"returns {-out}",
                )
            )
        if reserved != held_:
            problems.append(
                Problem(
                    check="reserved",
                    sku=sku,
                    expected=str(held_),
                    actual=str(reserved),
                    detail=f"{sku}: reserved is {reserved} but open reservations hold {held_}",
                )
            )
    return len(rows), problems


def _orders_of(skus: Sequence[str]) -> Select:
    return select(OrderLine.order_id).where(OrderLine.sku.in_(skus)).distinct()


async def _money_problems(s: AsyncSession, skus: Sequence[str], grace: timedelta) -> list[Problem]:
    problems: list[Problem] = []
    scope = [Invoice.order_id.in_(_orders_of(skus))] if skus else []
    mismatched = await s.execute(
        select(Receivable, Invoice)
        .join(Invoice, Invoice.number == Receivable.invoice_number)
        .where(
            (Invoice.amount != Receivable.amount)
            | (Invoice.customer_code != Receivable.customer_code),
            *scope,
        )
        .order_by(Invoice.number)
        .limit(MAX_PROBLEMS)
    )
    for rec, inv in mismatched.all():
        problems.append(
            Problem(
                check="receivable",
                ref=inv.number,
                expected=f"{inv.customer_code} {inv.amount}",
                actual=f"{rec.customer_code} {rec.amount}",
                detail=f"receivable {rec.id} of invoice {inv.number}: {rec.customer_code} "
                f"{rec.amount}, the invoice says {inv.customer_code} {inv.amount}",
            )
        )
    orphans = await s.scalars(
        select(Invoice.number)
        .outerjoin(Receivable, Receivable.invoice_number == Invoice.number)
        .where(Receivable.id.is_(None), *scope)
        .order_by(Invoice.number)
        .limit(MAX_PROBLEMS)
    )
    for number in orphans.all():
        problems.append(
            Problem(
                check="invoice",
                ref=number,
                expected="a receivable",
                actual="none",
                detail=f"invoice {number} has no receivable",
            )
        )
    cutoff = datetime.now(UTC) - grace
    unbilled = await s.execute(
        select(Shipment.order_id, Shipment.shipment_no, Shipment.tracking_number)
        .outerjoin(
            Invoice,
            and_(
                Invoice.order_id == Shipment.order_id,
                Invoice.shipment_no == Shipment.shipment_no,
            ),
        )
        .where(
            Invoice.number.is_(None),
            Shipment.status != "cancelled",
            Shipment.booked_at < cutoff,
            *([Shipment.order_id.in_(_orders_of(skus))] if skus else []),
        )
        .order_by(Shipment.order_id, Shipment.shipment_no)
        .limit(MAX_PROBLEMS)
    )
    for order_id, shipment_no, tracking in unbilled.all():
        problems.append(
            Problem(
                check="shipment",
                ref=tracking,
                expected="an invoice",
                actual="none",
                detail=f"shipment {shipment_no} of order {order_id} ({tracking}) left without "
                "an invoice",
            )
        )
    return problems


async def check(
    s: AsyncSession, skus: Sequence[str] = (), *, invoice_grace_seconds: float = 0
) -> Report:
    """Reconcile the books: every difference, saying exactly what is off (the first
    MAX_PROBLEMS of them; `problems_total` counts them all). Reads only."""
    checked_at = datetime.now(UTC)
    count, problems = await _stock_problems(s, skus)
    problems += await _money_problems(s, skus, timedelta(seconds=invoice_grace_seconds))
    return Report(
        checked_at=checked_at,
        skus_checked=count,
        ok=not problems,
        problems_total=len(problems),
        problems=problems[:MAX_PROBLEMS],
    )


# ---- cycle counts ----------------------------------------------------------------------------


class CountConflict(Exception):
    """The count id was used before for another count."""


class BadCount(ValueError):
    """A count names SKUs that are no products, or more units than a stock row holds:
    nothing is booked."""


def body_hash(body: CountIn) -> str:
    doc = body.model_dump(mode="json", exclude={"count_id"})
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


async def find_count(s: AsyncSession, count_id: str) -> CountOut | None:
    row = await s.get(StockCount, count_id)
    return None if row is None else CountOut.model_validate(row.result)


async def apply_count(
    s: AsyncSession, count_id: str, body: CountIn, actor: str
) -> tuple[CountOut, bool]:
    """Book a cycle count once per `count_id`: each difference becomes an audited count
    movement through db/stock.py. Answers the count's result and whether it is new; the
    same id again answers what it did the first time (CountConflict for another body).
    Lines of one SKU are added up (a SKU counted in two bins); the caller commits."""
    digest = body_hash(body)
    wanted = {ln.sku for ln in body.counts}
    found = await s.execute(
        select(Product.sku, Product.bin_location).where(Product.sku.in_(wanted))
    )
    homes: dict[str, str] = {sku: home for sku, home in found.all()}
    unknown = [
        f"counts[{i}].sku: no product {ln.sku}"
        for i, ln in enumerate(body.counts)
        if ln.sku not in homes
    ]
    totals: dict[str, int] = {}
    for line in body.counts:
        totals[line.sku] = totals.get(line.sku, 0) + line.counted
    unknown += [
        f"{sku}: {n} counted in all, more than a stock row holds"
        for sku, n in totals.items()
        if n > INT4_MAX
    ]
    if unknown:
        raise BadCount("; ".join(unknown[:20]))
    claimed = await s.execute(
        insert(StockCount)
        .values(id=count_id, body_hash=digest, reason=body.reason, counted_by=actor, result={})
        .on_conflict_do_nothing(index_elements=[StockCount.id])
        .returning(StockCount.at)
    )
    at = claimed.scalar()
    if at is None:  # this id was counted before (or is being counted right now: we waited)
        row = await s.get(StockCount, count_id)
        assert row is not None
        if row.body_hash != digest:
            raise CountConflict(
                f"count id {count_id!r} was used for another count "
                f"({row.at:%Y-%m-%d %H:%M} by {row.counted_by}); use a new id"
            )
        return CountOut.model_validate(row.result), False
    bins: dict[str, str | None] = {}
    for line in body.counts:
        bins[line.sku] = bins.get(line.sku) or line.bin_location
    lines = []
    for sku in sorted(totals):  # a fixed order: concurrent counts lock rows alike
        lines.append(
            await _count_one(s, count_id, body.reason, actor, sku, totals[sku], bins[sku], homes)
        )
    out = CountOut(
        id=count_id,
        reason=body.reason,
        counted_by=actor,
        at=at,
        differences=sum(1 for ln in lines if ln.status == "adjusted" or ln.status == "refused"),
        lines=lines,
    )
    row = await s.get(StockCount, count_id)
    assert row is not None
    row.result = out.model_dump(mode="json")
    return out, True


async def _count_one(
    s: AsyncSession,
    count_id: str,
    reason: str,
    actor: str,
    sku: str,
    counted: int,
    bin_location: str | None,
    homes: dict[str, str],
) -> CountLineOut:
    done = await stock.count(
        s,
        sku,
        counted,
        key=f"count:{count_id}:{sku}",
        actor=actor,
        reason=reason,
        bin_location=bin_location,
    )
    assert done is not None  # a product always has its stock row
    notes = []
    if bin_location and bin_location != homes[sku]:
        notes.append(f"counted at {bin_location}, but {sku} lives at {homes[sku]}")
    if done.refused:
        notes.insert(0, done.refused)
    status = "refused" if done.refused else ("adjusted" if done.difference else "ok")
    return CountLineOut(
        sku=sku,
        counted=counted,
        on_hand_before=done.before,
        on_hand_after=done.after,
        difference=counted - done.before,
        bin_location=bin_location,
        status=status,
        note="; ".join(notes),
    )
