"""Stock reservations. The CHECK constraints on `stock` make overselling impossible; the
order lines, locked while a reservation is made, make a retried reservation a no-op (a line
may be reserved in several goes, one row each, numbered by `seq`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo, stock
from db.models import OrderLine, Product, ProductionOrder, Reservation
from domain.fulfilment import Compensation, ReserveResult
from domain.orders import OrderRef, StatusChange
from domain.status import OrderStatus, wave_key

# What a line took: its reservation row (the line's next `seq`) and the line's reserved
# quantity, in one statement (the line is locked by the reservation's SELECT ... FOR UPDATE).
_RESERVED = text(
    """
WITH r AS (
    INSERT INTO reservations (order_id, order_line_id, sku, quantity, status, seq)
    SELECT :order, :line, :sku, CAST(:qty AS integer), 'active', count(*) + 1
    FROM reservations WHERE order_line_id = :line
)
UPDATE order_lines SET reserved_qty = reserved_qty + CAST(:qty AS integer) WHERE id = :line
"""
)


class InventoryActivities(DbActivities):
    @activity.defn(name="inventory.reserve")
    async def reserve(self, ref: OrderRef) -> ReserveResult:
        """Reserve what is available of every line still short (first come, first served:
        an order keeps what it holds); report what is still missing."""
        short: dict[str, int] = {}
        production: dict[str, int] = {}
        async with self.tx() as s:
            # Lock in SKU order (lines, then each stock row) so two orders sharing SKUs can
            # never deadlock; the locked lines also make a retried reservation a no-op.
            lines = (
                await s.execute(
                    select(
                        OrderLine.id,
                        OrderLine.order_id,
                        OrderLine.sku,
                        OrderLine.quantity,
                        OrderLine.reserved_qty,
                        OrderLine.shipped_qty,
                        Product.make_to_order,
                    )
                    .join(Product, Product.sku == OrderLine.sku)
                    .where(OrderLine.order_id == ref.order_id)
                    .order_by(OrderLine.sku)
                    .with_for_update(of=OrderLine)
                )
            ).all()
            ready = 0
            for line in lines:
                ready += line.reserved_qty
                need = line.quantity - line.reserved_qty - line.shipped_qty
                if need <= 0:
                    continue
                if line.make_to_order:
                    # Made for this order: its production order's completion reserves it.
                    production[line.sku] = await self._production_order(s, line)
                    continue
                taken = await self._take(s, line, need)
                ready += taken
                if taken < need:
                    short[line.sku] = need - taken
            if short or production:
                waiting = [f"{k} x{v}" for k, v in sorted(short.items())] + [
                    f"{sku} in production order #{pid}" for sku, pid in sorted(production.items())
                ]
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.BACKORDERED,
                        step_key=wave_key(
                            f"backordered:{','.join(sorted([*short, *production]))}",
                            ref.shipment_no,
                        ),
                        detail="waiting for: "
                        + ", ".join(waiting)
                        + (f"; {ready} unit(s) reserved" if ready else ""),
                    ),
                )
            else:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.RESERVED,
                        step_key=wave_key("reserved", ref.shipment_no),
                        detail=f"{ready} unit(s) on {len(lines)} line(s) reserved",
                    ),
                )
        return ReserveResult(
            fully_reserved=not short and not production,
            ready_units=ready,
            short=short,
            in_production={sku: pid for sku, pid in production.items()},
        )

    @staticmethod
    async def _take(s: AsyncSession, line: Row[*tuple[Any, ...]], need: int) -> int:
        """Reserve up to `need` units of the line's SKU; answers how many it got."""
        taken = await stock.reserve(s, line.sku, need)
        if taken > 0:
            await s.execute(
                _RESERVED, {"order": line.order_id, "line": line.id, "sku": line.sku, "qty": taken}
            )
        return taken

    async def _production_order(self, s: AsyncSession, line: Row[*tuple[Any, ...]]) -> int:
        """The line's production order, created once."""
        due = datetime.now(UTC).date() + timedelta(days=self.settings.production_lead_days)
        await s.execute(
            insert(ProductionOrder)
            .values(
                order_id=line.order_id,
                order_line_id=line.id,
                sku=line.sku,
                quantity=line.quantity,
                status="open",
                due_date=due,
            )
            .on_conflict_do_nothing(constraint="uq_production_orders_line")
        )
        return (
            await s.execute(
                select(ProductionOrder.id).where(ProductionOrder.order_line_id == line.id)
            )
        ).scalar_one()

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
                await stock.release(s, sku, qty)
                await s.execute(
                    update(OrderLine)
                    .where(OrderLine.id == line_id)
                    .values(reserved_qty=OrderLine.reserved_qty - qty)
                )
            await s.execute(
                update(ProductionOrder)
                .where(ProductionOrder.order_id == comp.order_id, ProductionOrder.status == "open")
                .values(status="cancelled")
            )
            await repo.record_event(
                s,
                comp.order_id,
                wave_key("compensate:reservation", comp.from_shipment),
                status=None,
                kind="compensation",
                detail=f"released {sum(r[1] for r in rows)} unit(s) on {len(rows)} line(s)",
            )
            return len(rows)
