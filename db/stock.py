"""The one writer of the `stock` table: every movement of a SKU's units goes through here.

Each movement is one UPDATE of the SKU's row whose arithmetic happens in PostgreSQL, so
concurrent movements never lose one another; the CHECK constraints on `stock` (on_hand >= 0,
reserved >= 0, reserved <= on_hand) make overselling impossible whatever the caller does.
Idempotency is the caller's: each movement comes with the row that records it once (a
reservation row, a shipment, a received replenishment, a completed production order), and
the caller moves stock only when that row changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Stock


def open_row(session: AsyncSession, sku: str) -> None:
    """A new product's stock row: nothing on hand, nothing reserved."""
    session.add(Stock(sku=sku, on_hand=0, reserved=0))


async def seed(session: AsyncSession, skus: Iterable[str], on_hand: int) -> None:
    """Demo data: `on_hand` units of each SKU that has no stock row yet (counted as
    received); existing rows are left as they are."""
    rows = [{"sku": sku, "on_hand": on_hand, "reserved": 0, "received": on_hand} for sku in skus]
    if rows:
        await session.execute(insert(Stock).values(rows).on_conflict_do_nothing())


async def reserve(session: AsyncSession, sku: str, want: int) -> int:
    """Reserve up to `want` units of what is available of `sku` (first come, first served:
    the row stays locked until the transaction ends); answers how many it got."""
    available = await session.scalar(
        select(Stock.on_hand - Stock.reserved).where(Stock.sku == sku).with_for_update()
    )
    taken = min(want, max(available or 0, 0))
    if taken <= 0:
        return 0
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(reserved=Stock.reserved + taken, updated_at=func.now())
    )
    return taken


async def release(session: AsyncSession, sku: str, quantity: int) -> None:
    """Give back `quantity` reserved units (a cancelled reservation)."""
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(reserved=Stock.reserved - quantity, updated_at=func.now())
    )


async def ship(session: AsyncSession, sku: str, quantity: int) -> None:
    """Reserved units leave the warehouse: off hand and off the reservation."""
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(
            on_hand=Stock.on_hand - quantity,
            reserved=Stock.reserved - quantity,
            shipped=Stock.shipped + quantity,
            updated_at=func.now(),
        )
    )


async def return_shipped(session: AsyncSession, sku: str, quantity: int) -> None:
    """Shipped units come back on hand (a cancelled shipment), free for any order."""
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(
            on_hand=Stock.on_hand + quantity,
            shipped=Stock.shipped - quantity,
            updated_at=func.now(),
        )
    )


async def receive(
    session: AsyncSession, sku: str, quantity: int, *, reserved: bool = False
) -> None:
    """Goods arrive: on hand goes up; `reserved`: they are made for an order and arrive
    already reserved for it (a completed production order)."""
    values: dict[str, Any] = {
        "on_hand": Stock.on_hand + quantity,
        "received": Stock.received + quantity,
        "updated_at": func.now(),
    }
    if reserved:
        values["reserved"] = Stock.reserved + quantity
    await session.execute(update(Stock).where(Stock.sku == sku).values(values))


async def adjust(session: AsyncSession, sku: str, on_hand: int) -> bool:
    """A stock count: on hand becomes `on_hand`, and what it rose by counts as received.
    Never below what is reserved for open orders: False (nothing written) then."""
    result = await session.execute(
        update(Stock)
        .where(Stock.sku == sku, Stock.reserved <= on_hand)
        .values(
            on_hand=on_hand,
            received=Stock.received + func.greatest(on_hand - Stock.on_hand, 0),
            updated_at=func.now(),
        )
        .returning(Stock.sku)
    )
    return result.first() is not None
