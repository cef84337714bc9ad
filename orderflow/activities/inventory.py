"""Stock reservations. The CHECK constraints on `stock` make overselling impossible; the
unique reservation per order line makes a retried reservation a no-op."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from orderflow.activities.base import DbActivities
from orderflow.db import repo
from orderflow.db.models import OrderLine, Reservation, Stock
from orderflow.domain.payloads import Compensation, OrderRef, ReserveResult, StatusChange
from orderflow.domain.status import OrderStatus


class InventoryActivities(DbActivities):
    @activity.defn(name="inventory.reserve")
    async def reserve(self, ref: OrderRef) -> ReserveResult:
        """Reserve every line that has no reservation yet; report the lines that are short."""
        short: dict[str, int] = {}
        async with self.tx() as s:
            # Lock in SKU order so two orders sharing SKUs can never deadlock.
            lines = (
                await s.scalars(
                    select(OrderLine)
                    .where(OrderLine.order_id == ref.order_id)
                    .order_by(OrderLine.sku)
                    .with_for_update()
                )
            ).all()
            for line in lines:
                if line.reserved_qty >= line.quantity:
                    continue
                taken = await s.execute(
                    update(Stock)
                    .where(Stock.sku == line.sku, Stock.on_hand - Stock.reserved >= line.quantity)
                    .values(reserved=Stock.reserved + line.quantity, updated_at=func.now())
                    .returning(Stock.sku)
                )
                if taken.first() is None:
                    short[line.sku] = line.quantity
                    continue
                inserted = await s.execute(
                    insert(Reservation)
                    .values(
                        order_id=ref.order_id,
                        order_line_id=line.id,
                        sku=line.sku,
                        quantity=line.quantity,
                        status="active",
                    )
                    .on_conflict_do_nothing(constraint="uq_reservations_line")
                    .returning(Reservation.id)
                )
                if inserted.first() is None:
                    # Cannot happen while the lines are locked; roll back rather than double-book.
                    raise RuntimeError(f"line {line.id} already has a reservation")
                line.reserved_qty = line.quantity
            if short:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.BACKORDERED,
                        step_key=f"backordered:{','.join(sorted(short))}",
                        detail="short: " + ", ".join(f"{k} x{v}" for k, v in sorted(short.items())),
                    ),
                )
            else:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.RESERVED,
                        step_key="reserved",
                        detail=f"{len(lines)} line(s) reserved",
                    ),
                )
        return ReserveResult(fully_reserved=not short, short=short)

    @activity.defn(name="inventory.release")
    async def release(self, comp: Compensation) -> int:
        """Compensation: give back every active reservation of the order, exactly once."""
        async with self.tx() as s:
            rows = (
                await s.execute(
                    update(Reservation)
                    .where(Reservation.order_id == comp.order_id, Reservation.status == "active")
                    .values(status="released", released_at=func.now())
                    .returning(Reservation.sku, Reservation.quantity, Reservation.order_line_id)
                )
            ).all()
            for sku, qty, line_id in sorted(rows):
                await s.execute(
                    update(Stock)
                    .where(Stock.sku == sku)
                    .values(reserved=Stock.reserved - qty, updated_at=func.now())
                )
                await s.execute(
                    update(OrderLine).where(OrderLine.id == line_id).values(reserved_qty=0)
                )
            await repo.record_event(
                s,
                comp.order_id,
                "compensate:reservation",
                status=None,
                kind="compensation",
                detail=f"released {sum(r[1] for r in rows)} unit(s) on {len(rows)} line(s)",
            )
            return len(rows)
