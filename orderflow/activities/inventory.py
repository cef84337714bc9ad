"""Stock reservations. The CHECK constraints on `stock` make overselling impossible; the
unique reservation per order line makes a retried reservation a no-op."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from orderflow.activities.base import DbActivities
from orderflow.db import repo
from orderflow.db.models import OrderLine, Product, ProductionOrder, Reservation, Stock
from orderflow.domain.payloads import Compensation, OrderRef, ReserveResult, StatusChange
from orderflow.domain.status import OrderStatus


class InventoryActivities(DbActivities):
    @activity.defn(name="inventory.reserve")
    async def reserve(self, ref: OrderRef) -> ReserveResult:
        """Reserve every line that has no reservation yet; report the lines that are short."""
        short: dict[str, int] = {}
        production: dict[str, int] = {}
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
            made_to_order = set(
                await s.scalars(
                    select(Product.sku).where(
                        Product.sku.in_({ln.sku for ln in lines}), Product.make_to_order
                    )
                )
            )
            for line in lines:
                if line.reserved_qty >= line.quantity:
                    continue
                if line.sku in made_to_order:
                    # Made for this order: its production order's completion reserves it.
                    production[line.sku] = await self._production_order(s, line)
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
            if short or production:
                waiting = [f"{k} x{v}" for k, v in sorted(short.items())] + [
                    f"{sku} in production order #{pid}" for sku, pid in sorted(production.items())
                ]
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.BACKORDERED,
                        step_key=f"backordered:{','.join(sorted([*short, *production]))}",
                        detail="waiting for: " + ", ".join(waiting),
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
        return ReserveResult(
            fully_reserved=not short and not production,
            short=short,
            in_production={sku: pid for sku, pid in production.items()},
        )

    async def _production_order(self, s, line: OrderLine) -> int:  # type: ignore[no-untyped-def]
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
        return int(
            await s.scalar(
                select(ProductionOrder.id).where(ProductionOrder.order_line_id == line.id)
            )
        )

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
            await s.execute(
                update(ProductionOrder)
                .where(ProductionOrder.order_id == comp.order_id, ProductionOrder.status == "open")
                .values(status="cancelled")
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
