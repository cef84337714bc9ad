"""Queries shared by the API and the activities, so both read the same facts the same way."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.db.models import Customer, Order, OrderEvent, Product, Receivable, Stock
from orderflow.domain.facts import CreditFacts, CustomerFacts, ProductFacts, StockFacts
from orderflow.domain.payloads import StatusChange
from orderflow.domain.status import UNBILLED_OPEN


def customer_facts(row: Customer | None) -> CustomerFacts | None:
    if row is None:
        return None
    complete = all([row.address_line1, row.city, row.postal_code, row.country])
    return CustomerFacts(
        code=row.code,
        tier=row.tier,
        status=row.status,
        credit_limit=row.credit_limit,
        address_complete=complete,
    )


async def load_products(session: AsyncSession, skus: Iterable[str]) -> dict[str, ProductFacts]:
    rows = (await session.scalars(select(Product).where(Product.sku.in_(set(skus))))).all()
    return {
        p.sku: ProductFacts(
            sku=p.sku,
            active=p.active,
            unit_price=p.unit_price,
            floor_price=p.floor_price,
            pack_size=p.pack_size,
            min_order_qty=p.min_order_qty,
            make_to_order=p.make_to_order,
        )
        for p in rows
    }


async def load_stock(session: AsyncSession, skus: Iterable[str]) -> dict[str, StockFacts]:
    rows = (await session.scalars(select(Stock).where(Stock.sku.in_(set(skus))))).all()
    return {s.sku: StockFacts(available=s.on_hand - s.reserved) for s in rows}


async def load_credit(
    session: AsyncSession, customer_code: str, today: date, exclude_order: str | None = None
) -> CreditFacts:
    """Open receivables, unbilled open orders (other than `exclude_order`), worst overdue days."""
    rec = (
        await session.execute(
            select(
                func.coalesce(func.sum(Receivable.open_amount), 0),
                func.min(Receivable.due_date),
            ).where(Receivable.customer_code == customer_code, Receivable.open_amount > 0)
        )
    ).one()
    open_q = select(func.coalesce(func.sum(Order.total), 0)).where(
        Order.customer_code == customer_code,
        Order.status.in_([s.value for s in UNBILLED_OPEN]),
    )
    if exclude_order is not None:
        open_q = open_q.where(Order.id != exclude_order)
    unbilled = await session.scalar(open_q)
    oldest_due: date | None = rec[1]
    overdue = max((today - oldest_due).days, 0) if oldest_due else 0
    return CreditFacts(
        open_receivables=Decimal(rec[0]),
        unbilled_open_orders=Decimal(unbilled or 0),
        max_days_overdue=overdue,
    )


async def record_event(
    session: AsyncSession,
    order_id: str,
    step_key: str,
    *,
    status: str | None,
    detail: str = "",
    actor: str = "system",
    kind: str = "status",
) -> bool:
    """Append a timeline event once per step key; False when it was already written."""
    result = await session.execute(
        insert(OrderEvent)
        .values(
            order_id=order_id,
            step_key=step_key,
            status=status,
            detail=detail,
            actor=actor,
            kind=kind,
        )
        .on_conflict_do_nothing(constraint="uq_order_events_step")
        .returning(OrderEvent.id)
    )
    return result.first() is not None


async def apply_status(session: AsyncSession, change: StatusChange) -> bool:
    """Move an order to a status with its timeline event; a replayed step changes nothing."""
    fresh = await record_event(
        session,
        change.order_id,
        change.step_key,
        status=change.status.value,
        detail=change.detail,
        actor=change.actor,
    )
    if fresh:
        await session.execute(
            update(Order)
            .where(Order.id == change.order_id)
            .values(
                status=change.status.value,
                awaiting_role=change.awaiting_role,
                updated_at=func.now(),
            )
        )
    return fresh


async def next_order_id(session: AsyncSession) -> str:
    n = await session.scalar(text("SELECT nextval('order_number_seq')"))
    return f"SO-{n:07d}"
