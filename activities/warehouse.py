"""Warehouse: pick lists in bin order, packing; in manual mode (docs/warehouse.md) the
floor's lists (one order's, or a wave's), what people picked and the packages they made."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.base import DbActivities
from db import repo, stock
from db.models import Order, OrderLine, Package, PickBatch, PickList, Product, Reservation
from domain.fulfilment import (
    Compensation,
    FloorList,
    FloorRequest,
    PackRecord,
    PackResult,
    PickOutcome,
    PickRecord,
)
from domain.layout import Layout, plan_walk
from domain.orders import OrderRef, StatusChange
from domain.status import OrderStatus, wave_key

# One forming wave at a time: orders joining it take this transaction-scoped lock.
_WAVE_LOCK = 170017


def sequence(
    lines: list[dict[str, Any]], layout: Layout | None = None
) -> tuple[list[dict[str, Any]], float, float]:
    """Lines in walking order through the site's layout (domain/layout.py), numbered; the
    walk's metres and the by-code walk's metres."""
    walk = plan_walk([str(line["bin_location"] or "") for line in lines], layout)
    ordered = [dict(lines[i], sequence=n) for n, i in enumerate(walk.order, start=1)]
    return ordered, walk.distance_m, walk.by_code_m


def _attempt_key(key: str, n: int, attempt: int) -> str:
    key = wave_key(key, n)
    return key if attempt == 1 else f"{key}:attempt{attempt}"


UNITS_PER_PACKAGE = 50

# An order's pick list, in one statement: its reserved lines in bin order, stored once (a
# retried step keeps the list it made) and answered either way.
_PICK_LIST = text(
    """
WITH picked AS (
    SELECT coalesce(
        jsonb_agg(
            jsonb_build_object('sku', l.sku, 'bin_location', p.bin_location,
                               'quantity', l.reserved_qty)
            ORDER BY p.bin_location, l.sku
        ),
        '[]'::jsonb
    ) AS lines
    FROM order_lines l JOIN products p ON p.sku = l.sku
    WHERE l.order_id = :order AND l.reserved_qty > 0
), made AS (
    INSERT INTO pick_lists (order_id, wave, attempt, status, lines)
    SELECT :order, :wave, 1, 'open', lines FROM picked
    ON CONFLICT ON CONSTRAINT uq_pick_lists_order_wave DO NOTHING
)
SELECT lines FROM picked
"""
)

# The shipment's pick list is packed (once: a retried step finds it packed); answers its
# units, UNITS_PER_PACKAGE (:per) to a package.
_PACK = text(
    """
WITH pick AS (
    SELECT id, (SELECT coalesce(sum((e ->> 'quantity')::int), 0)
                FROM jsonb_array_elements(lines) e) AS units
    FROM pick_lists WHERE order_id = :order AND wave = :wave
), packed AS (
    UPDATE pick_lists l SET status = 'packed',
        packages = GREATEST(1, CEIL(pick.units / CAST(:per AS numeric)))::int
    FROM pick WHERE l.id = pick.id AND l.status = 'open'
)
SELECT units FROM pick
"""
)


class WarehouseActivities(DbActivities):
    @activity.defn(name="warehouse.create_pick_list")
    async def create_pick_list(self, ref: OrderRef) -> None:
        """One pick list per order, lines sorted by bin location so the picker walks once."""
        async with self.tx() as s:
            lines = (
                await s.scalar(_PICK_LIST, {"order": ref.order_id, "wave": ref.shipment_no})
            ) or []
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
            units = int(
                (
                    await s.execute(
                        _PACK,
                        {"order": ref.order_id, "wave": ref.shipment_no, "per": UNITS_PER_PACKAGE},
                    )
                ).scalar_one()
            )
            packages = max(1, math.ceil(units / UNITS_PER_PACKAGE))
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
            cancelled = await s.execute(
                update(PickList)
                .where(
                    PickList.order_id == comp.order_id,
                    PickList.wave >= comp.from_shipment,
                    PickList.status != "cancelled",
                )
                .values(status="cancelled")
                .returning(PickList.batch_id)
            )
            for batch_id in sorted({b for (b,) in cancelled.all() if b is not None}):
                await _leave_batch(s, batch_id, comp.order_id)
            await repo.record_event(
                s,
                comp.order_id,
                wave_key("compensate:pick_list", comp.from_shipment),
                status=None,
                kind="compensation",
                detail="pick list cancelled, goods returned to their bins",
            )

    # ---- manual mode: the floor ---------------------------------------------------------

    @activity.defn(name="warehouse.open_floor")
    async def open_floor(self, req: FloorRequest) -> FloorList:
        """The shipment's pick list goes to the floor: its own list (urgent or large orders),
        or into the forming wave of small orders (released at once when it is full)."""
        ref, cfg = req.ref, self.settings
        async with self.tx() as s:
            found = await self._pick_list(s, ref, req.attempt)
            if found is not None and found.batch_id is not None:
                return await self._floor_list(s, found)  # a retried step: the same answer
            rows = (
                await s.execute(
                    select(OrderLine.sku, Product.bin_location, OrderLine.reserved_qty)
                    .join(Product, Product.sku == OrderLine.sku)
                    .where(OrderLine.order_id == ref.order_id, OrderLine.reserved_qty > 0)
                    .order_by(Product.bin_location, OrderLine.sku)
                )
            ).all()
            lines, _, _ = sequence(
                [{"sku": sku, "bin_location": b, "quantity": q} for sku, b, q in rows],
                cfg.warehouse_layout,
            )
            priority = await s.scalar(select(Order.priority).where(Order.id == ref.order_id))
            units = sum(int(q) for _, _, q in rows)
            small = (
                priority != "urgent"
                and cfg.wave_max_orders > 1
                and len(lines) <= cfg.wave_max_lines
                and units <= cfg.wave_max_units
            )
            pick = PickList(
                order_id=ref.order_id, wave=ref.shipment_no, attempt=req.attempt, lines=lines
            )
            pick.status = "open"
            s.add(pick)
            await s.flush()
            if small:
                batch = await self._join_wave(s, pick)
                how = f"in wave #{batch.id}"
            else:
                batch = PickBatch(kind="single", status="open", lines=[])
                batch.lines = [dict(line, order_id=ref.order_id) for line in lines]
                _, distance, by_code = sequence(lines, self.settings.warehouse_layout)
                batch.distance_m, batch.by_code_m = _metres(distance), _metres(by_code)
                batch.released_at = func.now()
                s.add(batch)
                await s.flush()
                pick.batch_id = batch.id
                how = f"pick list #{batch.id}"
            await repo.apply_status(
                s,
                StatusChange(
                    order_id=ref.order_id,
                    status=OrderStatus.PICKING,
                    step_key=_attempt_key("picking", ref.shipment_no, req.attempt),
                    detail=f"to the floor ({priority}), {how}: "
                    + ", ".join(f"{r['bin_location']} {r['sku']} x{r['quantity']}" for r in lines),
                ),
            )
            await s.flush()
            return await self._floor_list(s, pick)

    async def _join_wave(self, s: AsyncSession, pick: PickList) -> PickBatch:
        """Add the pick list's lines to the forming wave (a new one if none); a wave that
        now holds `wave_max_orders` orders goes to the floor."""
        await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _WAVE_LOCK})
        batch = await s.scalar(
            select(PickBatch)
            .where(PickBatch.kind == "wave", PickBatch.status == "forming")
            .order_by(PickBatch.id)
            .limit(1)
            .with_for_update()
        )
        if batch is None:
            now = await s.scalar(select(func.now()))
            assert now is not None
            batch = PickBatch(
                kind="wave",
                status="forming",
                lines=[],
                release_at=now + timedelta(seconds=self.settings.wave_release_seconds),
            )
            s.add(batch)
            await s.flush()
        batch.lines = [*batch.lines, *(dict(ln, order_id=pick.order_id) for ln in pick.lines)]
        pick.batch_id = batch.id
        await s.flush()
        members = await s.scalar(
            select(func.count())
            .select_from(PickList)
            .where(PickList.batch_id == batch.id, PickList.status != "cancelled")
        )
        if int(members or 0) >= self.settings.wave_max_orders:
            await self._release(s, batch)
        return batch

    async def _release(self, s: AsyncSession, batch: PickBatch) -> None:
        lines, distance, by_code = sequence(list(batch.lines), self.settings.warehouse_layout)
        batch.lines = lines
        batch.distance_m, batch.by_code_m = _metres(distance), _metres(by_code)
        batch.status = "open"
        batch.released_at = func.now()
        await s.flush()

    @activity.defn(name="warehouse.release_wave")
    async def release_wave(self, floor: FloorList) -> None:
        """The wave's time is up: it goes to the floor as it is (a no-op once released)."""
        async with self.tx() as s:
            batch = await s.scalar(
                select(PickBatch)
                .where(PickBatch.id == floor.batch_id, PickBatch.status == "forming")
                .with_for_update()
            )
            if batch is not None:
                await self._release(s, batch)

    @staticmethod
    async def _pick_list(s: AsyncSession, ref: OrderRef, attempt: int) -> PickList | None:
        found: PickList | None = await s.scalar(
            select(PickList)
            .where(
                PickList.order_id == ref.order_id,
                PickList.wave == ref.shipment_no,
                PickList.attempt == attempt,
            )
            .with_for_update()
        )
        return found

    @staticmethod
    async def _floor_list(s: AsyncSession, pick: PickList) -> FloorList:
        batch = await s.get(PickBatch, pick.batch_id)
        assert batch is not None
        release_at = batch.release_at if batch.status == "forming" else None
        release_in: float | None = None
        if release_at is not None:
            now = await s.scalar(select(func.now()))
            assert now is not None
            release_in = max((release_at - now).total_seconds(), 0.0)
        return FloorList(
            pick_list_id=pick.id,
            batch_id=batch.id,
            kind=batch.kind,  # type: ignore[arg-type]  # the CHECK constraint's values
            release_at=release_at,
            release_in_seconds=release_in,
        )

    @activity.defn(name="warehouse.record_pick")
    async def record_pick(self, rec: PickRecord) -> PickOutcome:
        """What the floor picked: a short line gives back the reservation it could not fill
        (db/stock.py), then the order ships what was picked or reserves again (its usual
        rules). Once per pick list: a retry answers the same."""
        ref = rec.ref
        async with self.tx() as s:
            pick = await self._pick_list(s, ref, rec.attempt)
            if pick is None:
                raise RuntimeError(f"order {ref.order_id} has no pick list {ref.shipment_no}")
            if pick.status != "open":
                return _outcome(pick.lines)
            said = {line.sku: line.picked for line in rec.confirmation.lines}
            lines = [
                dict(ln, picked=min(int(said.get(ln["sku"], ln["quantity"])), int(ln["quantity"])))
                for ln in pick.lines
            ]
            outcome = _outcome(lines)
            bins = {str(ln["sku"]): ln.get("bin_location") for ln in lines}
            for sku, short in sorted(outcome.short.items()):
                await _give_back(s, ref.order_id, sku, short)
                # The picker found fewer on the shelf than the books say: the missing units
                # come off on hand (audited), so no order reserves them again.
                off = await stock.write_off(
                    s,
                    sku,
                    short,
                    key=f"short-pick:{ref.order_id}:{ref.shipment_no}:{rec.attempt}:{sku}",
                    actor=rec.confirmation.by,
                    reason=f"short pick: order {ref.order_id} shipment {ref.shipment_no} "
                    f"(attempt {rec.attempt}) found {short} unit(s) fewer than listed",
                    bin_location=bins.get(sku),
                )
                if off:
                    outcome.written_off[sku] = off
                    lines = [dict(ln, written_off=off) if ln["sku"] == sku else ln for ln in lines]
            pick.lines = lines
            pick.status = "short" if outcome.short else "picked"
            pick.picked_at = func.now()
            await s.flush()
            await _close_batch(s, pick.batch_id)
            ships = not outcome.short or (rec.ship_partial and outcome.picked > 0)
            detail = f"{rec.confirmation.by} picked {outcome.picked} of {outcome.requested} unit(s)"
            if outcome.short:
                detail += "; short: " + ", ".join(f"{k} x{v}" for k, v in outcome.short.items())
            if outcome.written_off:
                detail += "; written off on hand: " + ", ".join(
                    f"{k} x{v}" for k, v in outcome.written_off.items()
                )
            if ships:
                await repo.apply_status(
                    s,
                    StatusChange(
                        order_id=ref.order_id,
                        status=OrderStatus.PACKED,
                        step_key=_attempt_key("packed", ref.shipment_no, rec.attempt),
                        detail=detail + "; waiting for packages",
                    ),
                )
            else:
                await repo.record_event(
                    s,
                    ref.order_id,
                    _attempt_key("short-pick", ref.shipment_no, rec.attempt),
                    status=None,
                    kind="note",
                    detail=detail + "; the picked goods go back, the shipment is reserved again",
                )
            return outcome

    @activity.defn(name="warehouse.record_packages")
    async def record_packages(self, rec: PackRecord) -> PackResult:
        """The packages the floor made: stored once, then booked with the carrier."""
        ref = rec.ref
        async with self.tx() as s:
            await s.execute(
                insert(Package)
                .values(
                    [
                        {
                            "order_id": ref.order_id,
                            "shipment_no": ref.shipment_no,
                            "seq": n,
                            **p.model_dump(),
                        }
                        for n, p in enumerate(rec.packages, start=1)
                    ]
                )
                .on_conflict_do_nothing(constraint="uq_packages_order_no_seq")
            )
            await s.execute(
                update(PickList)
                .where(
                    PickList.order_id == ref.order_id,
                    PickList.wave == ref.shipment_no,
                    PickList.attempt == rec.attempt,
                    PickList.status.in_(("picked", "short")),
                )
                .values(status="packed", packages=len(rec.packages), packed_at=func.now())
            )
            weight = sum((p.weight_kg for p in rec.packages), Decimal(0))
            await repo.record_event(
                s,
                ref.order_id,
                wave_key("packages", ref.shipment_no),
                status=None,
                kind="note",
                detail=f"packed in {len(rec.packages)} package(s), {weight} kg",
            )
            return PackResult(packages=len(rec.packages))


def _metres(m: float) -> Decimal:
    return Decimal(str(round(m, 1)))


def _outcome(lines: list[dict[str, Any]]) -> PickOutcome:
    requested = sum(int(ln["quantity"]) for ln in lines)
    picked = sum(int(ln.get("picked", ln["quantity"])) for ln in lines)
    short = {
        str(ln["sku"]): int(ln["quantity"]) - int(ln.get("picked", ln["quantity"]))
        for ln in lines
        if int(ln.get("picked", ln["quantity"])) < int(ln["quantity"])
    }
    written_off = {str(ln["sku"]): int(ln["written_off"]) for ln in lines if ln.get("written_off")}
    return PickOutcome(requested=requested, picked=picked, short=short, written_off=written_off)


async def _give_back(s: AsyncSession, order_id: str, sku: str, units: int) -> None:
    """Release `units` of the order's active reservations of `sku`, newest first."""
    rows = (
        await s.scalars(
            select(Reservation)
            .where(
                Reservation.order_id == order_id,
                Reservation.sku == sku,
                Reservation.status == "active",
            )
            .order_by(Reservation.seq.desc())
            .with_for_update()
        )
    ).all()
    left = units
    for row in rows:
        if left <= 0:
            break
        take = min(left, row.quantity)
        row.quantity -= take
        if row.quantity == 0:
            row.status, row.released_at = "released", func.now()
        await stock.release(s, sku, take)
        await s.execute(
            update(OrderLine)
            .where(OrderLine.id == row.order_line_id)
            .values(reserved_qty=OrderLine.reserved_qty - take)
        )
        left -= take


async def _close_batch(s: AsyncSession, batch_id: int | None) -> None:
    """A floor list whose every order is confirmed (or cancelled) is done."""
    if batch_id is None:
        return
    still_open = await s.scalar(
        select(func.count())
        .select_from(PickList)
        .where(PickList.batch_id == batch_id, PickList.status == "open")
    )
    if not still_open:
        await s.execute(
            update(PickBatch)
            .where(PickBatch.id == batch_id, PickBatch.status.in_(("open", "forming")))
            .values(status="confirmed", confirmed_at=func.now())
        )


async def _leave_batch(s: AsyncSession, batch_id: int, order_id: str) -> None:
    """A cancelled order's lines leave the floor list it was on (the list ends with none)."""
    batch = await s.scalar(select(PickBatch).where(PickBatch.id == batch_id).with_for_update())
    if batch is None or batch.status in ("confirmed", "cancelled"):
        return
    batch.lines = [ln for ln in batch.lines if ln.get("order_id") != order_id]
    if not batch.lines:
        batch.status = "cancelled"
    await s.flush()
    await _close_batch(s, batch_id)
