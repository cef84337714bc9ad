"""The one writer of the `stock` table: every movement of a SKU's units goes through here.

Each movement is one UPDATE of the SKU's row whose arithmetic happens in PostgreSQL, so
concurrent movements never lose one another; the CHECK constraints on `stock` (on_hand >= 0,
reserved >= 0, reserved <= on_hand) make overselling impossible whatever the caller does.
Idempotency is the caller's: each movement comes with the row that records it once (a
reservation row, a shipment, a received replenishment, a completed production order), and
the caller moves stock only when that row changed.

Every change of on hand is also booked in the stock ledger (`stock_movements`, one INSERT in
the same transaction): db/reconcile.py checks that the two agree (docs/reconcile.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Disruption, HeldStock, Stock, StockMovement


def open_row(session: AsyncSession, sku: str) -> None:
    """A new product's stock row: nothing on hand, nothing reserved."""
    session.add(Stock(sku=sku, on_hand=0, reserved=0))


# ---- the ledger -----------------------------------------------------------------------------
# Every change of on hand is booked as one stock_movements row in the same transaction as the
# UPDATE: `on_hand` must always equal the sum of a SKU's movements (db/reconcile.py checks).
# A movement's key is unique: booking the same key again moves nothing (answers False).
RECEIPT, SHIPMENT, RETURN, ADJUSTMENT, COUNT, OPENING = (
    "receipt",
    "shipment",
    "return",
    "adjustment",
    "count",
    "opening",
)
# Kinds that are neither a receipt nor a shipment: what `adjustments` sums in the balance.
ADJUSTING_KINDS = (ADJUSTMENT, COUNT, OPENING)


async def _book(
    session: AsyncSession,
    sku: str,
    kind: str,
    quantity: int,
    key: str | None,
    **audit: Any,
) -> bool:
    """Record one movement; False (nothing recorded) when its key was booked before. Without
    a key the caller's own row makes the move once (the movement still lands in the same
    transaction, so the ledger stays whole), and a fresh key is made."""
    result = await session.execute(
        insert(StockMovement)
        .values(
            sku=sku,
            kind=kind,
            key=key or f"{kind}:{sku}:{uuid4().hex}",
            quantity=quantity,
            **audit,
        )
        .on_conflict_do_nothing(constraint="uq_stock_movements_key")
        .returning(StockMovement.id)
    )
    return result.first() is not None


async def seed(session: AsyncSession, skus: Iterable[str], on_hand: int) -> None:
    """Demo data: `on_hand` units of each SKU that has no stock row yet (counted as
    received); existing rows are left as they are."""
    rows = [{"sku": sku, "on_hand": on_hand, "reserved": 0, "received": on_hand} for sku in skus]
    if rows:
        made = await session.execute(
            insert(Stock).values(rows).on_conflict_do_nothing().returning(Stock.sku)
        )
        for sku in made.scalars().all():
            await _book(session, sku, RECEIPT, on_hand, f"seed:{sku}", reason="demo data")


async def disrupted(session: AsyncSession, sku: str) -> bool:
    """Whether an active disruption (api/routes/disruptions.py) holds `sku` back."""
    found = await session.scalar(
        select(Disruption.id).where(Disruption.sku == sku, Disruption.status == "active")
    )
    return found is not None


# Two statements: the first locks the SKU's row and reads what is available; the second,
# whose snapshot is taken once the lock is held, takes it unless an active disruption
# (api/routes/disruptions.py) holds the SKU back. One statement would not do: a statement
# that waited for the lock still reads the other tables as they were when it began, so it
# would miss a disruption declared (under this same row lock) while it waited. The row
# stays locked until the transaction ends, so what one order took no other order takes
# (first come, first served); a waiting order reads the row as its holder left it.
_AVAILABLE = text(
    "SELECT LEAST(CAST(:want AS integer), GREATEST(on_hand - reserved, 0)) "
    "FROM stock WHERE sku = :sku FOR UPDATE"
)
_TAKE = text(
    """
UPDATE stock SET reserved = reserved + CAST(:take AS integer), updated_at = now()
WHERE sku = :sku
  AND NOT EXISTS (SELECT 1 FROM disruptions d WHERE d.sku = :sku AND d.status = 'active')
RETURNING CAST(:take AS integer)
"""
)


async def reserve(session: AsyncSession, sku: str, want: int) -> int:
    """Reserve up to `want` units of what is available of `sku` (first come, first served:
    the row stays locked until the transaction ends); answers how many it got."""
    available = await session.scalar(_AVAILABLE, {"sku": sku, "want": want})
    if not available or available <= 0:
        return 0
    taken = await session.scalar(_TAKE, {"sku": sku, "take": available})
    return int(taken or 0)


async def release(session: AsyncSession, sku: str, quantity: int) -> None:
    """Give back `quantity` reserved units (a cancelled reservation)."""
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(reserved=Stock.reserved - quantity, updated_at=func.now())
    )


# A shipment's movement and the stock row it changes, in one statement: the row moves only
# when the movement is new (its key unique), so a retried shipment moves nothing.
_SHIP = text(
    """
WITH m AS (
    INSERT INTO stock_movements (sku, kind, key, quantity)
    VALUES (:sku, :kind, :key, -CAST(:qty AS integer))
    ON CONFLICT ON CONSTRAINT uq_stock_movements_key DO NOTHING
    RETURNING id
)
UPDATE stock SET
    on_hand = on_hand - CAST(:qty AS integer),
    reserved = reserved - CAST(:qty AS integer),
    shipped = shipped + CAST(:qty AS integer),
    updated_at = now()
WHERE sku = :sku AND EXISTS (SELECT 1 FROM m)
"""
)


async def ship(session: AsyncSession, sku: str, quantity: int, *, key: str | None = None) -> None:
    """Reserved units leave the warehouse: off hand and off the reservation."""
    await session.execute(
        _SHIP,
        {
            "sku": sku,
            "kind": SHIPMENT,
            "key": key or f"{SHIPMENT}:{sku}:{uuid4().hex}",
            "qty": quantity,
        },
    )


async def return_shipped(
    session: AsyncSession, sku: str, quantity: int, *, key: str | None = None
) -> None:
    """Shipped units come back on hand (a cancelled shipment), free for any order."""
    if not await _book(session, sku, RETURN, quantity, key):
        return
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(
            on_hand=Stock.on_hand + quantity,
            shipped=Stock.shipped - quantity,
            updated_at=func.now(),
        )
    )


async def hold_returned(session: AsyncSession, sku: str, location: str, quantity: int) -> None:
    """Returned units put where no order can take them (quarantine, scrap): they stay
    counted as shipped on the stock row, so on_hand + shipped = received still holds, and
    `held_stock` says where they are. The caller writes once per receipt row."""
    await session.execute(
        insert(HeldStock)
        .values(sku=sku, location=location, quantity=quantity)
        .on_conflict_do_update(
            index_elements=[HeldStock.sku, HeldStock.location],
            set_={"quantity": HeldStock.quantity + quantity, "updated_at": func.now()},
        )
    )


async def unrestock_to_quarantine(
    session: AsyncSession, sku: str, quantity: int, *, key: str
) -> int:
    """Undo a return's restock (its credit failed): up to `quantity` units still available
    go back off hand into quarantine (booked as a negative return); answers how many moved
    (units another order has reserved meanwhile stay with it)."""
    available = await session.scalar(
        select(Stock.on_hand - Stock.reserved).where(Stock.sku == sku).with_for_update()
    )
    moved = min(quantity, max(available or 0, 0))
    if moved > 0 and await _book(session, sku, RETURN, -moved, key):
        await session.execute(
            update(Stock)
            .where(Stock.sku == sku)
            .values(
                on_hand=Stock.on_hand - moved,
                shipped=Stock.shipped + moved,
                updated_at=func.now(),
            )
        )
        await hold_returned(session, sku, "quarantine", moved)
        return moved
    return 0


async def receive(
    session: AsyncSession,
    sku: str,
    quantity: int,
    *,
    reserved: bool = False,
    key: str | None = None,
) -> None:
    """Goods arrive: on hand goes up; `reserved`: they are made for an order and arrive
    already reserved for it (a completed production order)."""
    if not await _book(session, sku, RECEIPT, quantity, key):
        return
    values: dict[str, Any] = {
        "on_hand": Stock.on_hand + quantity,
        "received": Stock.received + quantity,
        "updated_at": func.now(),
    }
    if reserved:
        values["reserved"] = Stock.reserved + quantity
    await session.execute(update(Stock).where(Stock.sku == sku).values(values))


async def adjust(
    session: AsyncSession, sku: str, on_hand: int, *, actor: str | None = None
) -> bool:
    """Stock set by hand (PUT /inventory): on hand becomes `on_hand`; what it rose by counts
    as received, what it fell by is an adjustment. Never below what is reserved for open
    orders: False (nothing written) then."""
    row = (
        await session.execute(
            select(Stock.on_hand, Stock.reserved).where(Stock.sku == sku).with_for_update()
        )
    ).first()
    if row is None or row.reserved > on_hand:
        return False
    delta = on_hand - row.on_hand
    if delta == 0:
        return True
    await _book(
        session,
        sku,
        RECEIPT if delta > 0 else ADJUSTMENT,
        delta,
        None,  # setting a level is idempotent by itself: the same level again moves nothing
        actor=actor,
        reason="stock set by hand (PUT /inventory)",
        on_hand_before=row.on_hand,
        on_hand_after=on_hand,
    )
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(
            on_hand=on_hand,
            received=Stock.received + max(delta, 0),
            updated_at=func.now(),
        )
    )
    return True


@dataclass(frozen=True)
class Counted:
    """What one count line did to a SKU's stock."""

    before: int
    after: int
    reserved: int
    refused: str | None = None  # why on hand was left as it was

    @property
    def difference(self) -> int:
        return self.after - self.before


async def count(
    session: AsyncSession,
    sku: str,
    counted: int,
    *,
    key: str,
    actor: str,
    reason: str,
    bin_location: str | None = None,
) -> Counted | None:
    """A cycle count of `sku`: on hand becomes `counted`, the difference booked as an
    audited adjustment (who, when, before, after, why) under `key`, once. Refused (nothing
    written) when fewer units were counted than open orders hold reserved; None when there
    is no such SKU."""
    row = (
        await session.execute(
            select(Stock.on_hand, Stock.reserved).where(Stock.sku == sku).with_for_update()
        )
    ).first()
    if row is None:
        return None
    if counted < row.reserved:
        return Counted(
            row.on_hand,
            row.on_hand,
            row.reserved,
            refused=f"counted {counted} is below the {row.reserved} unit(s) reserved for open "
            "orders; on hand left as it was: find the missing units or release those orders",
        )
    delta = counted - row.on_hand
    if delta == 0:
        return Counted(row.on_hand, counted, row.reserved)
    booked = await _book(
        session,
        sku,
        COUNT,
        delta,
        key,
        actor=actor,
        reason=reason,
        on_hand_before=row.on_hand,
        on_hand_after=counted,
        bin_location=bin_location,
    )
    if not booked:  # this count line was applied before: what it did then stands
        return Counted(row.on_hand, row.on_hand, row.reserved)
    await session.execute(
        update(Stock).where(Stock.sku == sku).values(on_hand=counted, updated_at=func.now())
    )
    return Counted(row.on_hand, counted, row.reserved)


async def write_off(
    session: AsyncSession,
    sku: str,
    units: int,
    *,
    key: str,
    actor: str,
    reason: str,
    bin_location: str | None = None,
) -> int:
    """Units found missing on the shelf (a short pick): on hand goes down by up to `units`,
    booked once under `key` as an audited adjustment. Never below what open orders hold
    reserved: answers how many units were written off (the rest is left to a cycle count)."""
    row = (
        await session.execute(
            select(Stock.on_hand, Stock.reserved).where(Stock.sku == sku).with_for_update()
        )
    ).first()
    if row is None:
        return 0
    off = min(units, max(row.on_hand - row.reserved, 0))
    if off <= 0:
        return 0
    booked = await _book(
        session,
        sku,
        ADJUSTMENT,
        -off,
        key,
        actor=actor,
        reason=reason,
        on_hand_before=row.on_hand,
        on_hand_after=row.on_hand - off,
        bin_location=bin_location,
    )
    if not booked:
        return 0
    await session.execute(
        update(Stock)
        .where(Stock.sku == sku)
        .values(on_hand=Stock.on_hand - off, updated_at=func.now())
    )
    return off
