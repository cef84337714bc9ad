"""Warehouse: pick lists in bin order, packing."""

from __future__ import annotations

import math

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities.base import DbActivities
from db import repo
from db.models import OrderLine, PickList, Product
from domain.fulfilment import Compensation, PackResult
from domain.orders import OrderRef, StatusChange
from domain.status import OrderStatus, wave_key

UNITS_PER_PACKAGE = 50


class WarehouseActivities(DbActivities):
    @activity.defn(name="warehouse.create_pick_list")
    async def create_pick_list(self, ref: OrderRef) -> None:
        """One pick list per order, lines sorted by bin location so the picker walks once."""
        async with self.tx() as s:
            rows = (
                await s.execute(
                    select(OrderLine.sku, Product.bin_location, OrderLine.reserved_qty)
                    .join(Product, Product.sku == OrderLine.sku)
                    .where(OrderLine.order_id == ref.order_id, OrderLine.reserved_qty > 0)
                    .order_by(Product.bin_location, OrderLine.sku)
                )
            ).all()
            lines = [{"sku": sku, "bin_location": b, "quantity": q} for sku, b, q in rows]
            await s.execute(
                insert(PickList)
                .values(order_id=ref.order_id, wave=ref.shipment_no, lines=lines, status="open")
                .on_conflict_do_nothing(constraint="uq_pick_lists_order_wave")
            )
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=ref.order_id,
                    status=OrderStatus.PICKING,
                    step_key=wave_key("picking", ref.shipment_no),
                    detail="pick list: "
                    + ", ".join(f"{r['bin_location']} {r['sku']} x{r['quantity']}" for r in lines),
                ),
            )

    @activity.defn(name="warehouse.pack")
    async def pack(self, ref: OrderRef) -> PackResult:
        async with self.tx() as s:
            pick = (
                await s.scalars(
                    select(PickList).where(
                        PickList.order_id == ref.order_id, PickList.wave == ref.shipment_no
                    )
                )
            ).one()
            units = sum(int(line["quantity"]) for line in pick.lines)
            packages = max(1, math.ceil(units / UNITS_PER_PACKAGE))
            await s.execute(
                update(PickList)
                .where(PickList.id == pick.id, PickList.status == "open")
                .values(status="packed", packages=packages)
            )
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=ref.order_id,
                    status=OrderStatus.PACKED,
                    step_key=wave_key("packed", ref.shipment_no),
                    detail=f"{units} unit(s) in {packages} package(s)",
                ),
            )
            return PackResult(packages=packages)

    @activity.defn(name="warehouse.cancel_pick_list")
    async def cancel_pick_list(self, comp: Compensation) -> None:
        """Compensation: the picked goods go back to their bins (they stay reserved until the
        reservation itself is released by the next compensation)."""
        async with self.tx() as s:
            await s.execute(
                update(PickList)
                .where(
                    PickList.order_id == comp.order_id,
                    PickList.wave >= comp.from_shipment,
                    PickList.status != "cancelled",
                )
                .values(status="cancelled")
            )
            await repo.record_event(
                s,
                comp.order_id,
                wave_key("compensate:pick_list", comp.from_shipment),
                status=None,
                kind="compensation",
                detail="pick list cancelled, goods returned to their bins",
            )
