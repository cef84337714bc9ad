"""The warehouse floor in manual mode (docs/warehouse.md): the shipment's pick list goes to
the floor (its own, or a wave of small orders), the order waits for people to confirm what
they picked and then for the packages they made. Each wait raises one alert when it runs
past its SLA and keeps waiting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

from workflows.context import OrderContext

with workflow.unsafe.imports_passed_through():
    from activities.warehouse import WarehouseActivities
    from domain.fulfilment import (
        FloorList,
        FloorRequest,
        PackagesGiven,
        PackRecord,
        PackResult,
        PickConfirmation,
        PickOutcome,
        PickRecord,
    )
    from domain.orders import OrderRef
    from domain.shipping import Parcel
    from domain.status import OrderStatus

# After its SLA alert a wait goes on in steps of this (a timer each, no further alert).
_KEEP_WAITING = timedelta(days=1)


@dataclass
class Picked:
    """A shipment picked and packed on the floor."""

    packed: PackResult
    parcels: list[Parcel]
    short: bool


class Floor:
    """One order's part of the floor: the list being walked and what people said."""

    def __init__(self, ctx: OrderContext) -> None:
        self.ctx = ctx
        self.current: FloorList | None = None
        # What the floor is waiting for from people: "pick", "packages" or nothing.
        self.awaiting: str | None = None
        self.confirmation: PickConfirmation | None = None
        self.packages: PackagesGiven | None = None
        self.picks_recorded = 0
        self.packs_recorded = 0
        # Confirmations that arrived before the order waited for their list (by list id):
        # kept in the workflow's state, so a person's confirm is never lost to a race.
        self.early: dict[int, PickConfirmation] = {}

    def take_early(self, c: PickConfirmation) -> None:
        """A confirmation sent as a signal (the Update found the order between two steps):
        taken at once when the order already waits for that list, else when it does."""
        current = self.current
        if (
            self.awaiting == "pick"
            and self.confirmation is None
            and current is not None
            and current.batch_id == c.batch_id
        ):
            self.confirmation = c
        else:
            self.early[c.batch_id] = c

    async def pick_and_pack(self, ref: OrderRef, attempt: int) -> Picked | None:
        """Pick and pack the shipment by hand; None when a short pick means the shipment
        is reserved again (no partial shipment, or nothing picked)."""
        ctx, inp = self.ctx, self.ctx.inp
        self.confirmation, self.packages = None, None
        floor = await ctx.local(
            WarehouseActivities.open_floor,
            FloorRequest(ref=ref, attempt=attempt),
            summary=f"pick list for shipment {ref.shipment_no} to the floor",
        )
        ctx.moved(OrderStatus.PICKING)
        self.current, self.awaiting = floor, "pick"
        self.confirmation = self.early.pop(floor.batch_id, None)
        if floor.release_at is not None:
            # Durable wave release: every order in a forming wave holds a timer to its
            # release time; the first to fire releases it (a no-op for the others).
            if floor.release_in_seconds is not None:
                remaining = timedelta(seconds=floor.release_in_seconds)
            else:  # a list opened before the field existed
                remaining = floor.release_at - workflow.now()
            if remaining > timedelta(0) and self.confirmation is None:
                await ctx.wait(
                    lambda: self.confirmation is not None,
                    remaining,
                    timer=f"wave #{floor.batch_id}: release it to the floor",
                )
            if self.confirmation is None:
                await ctx.local(
                    WarehouseActivities.release_wave,
                    floor,
                    summary=f"release wave #{floor.batch_id} to the floor",
                )
        await self._wait(
            lambda: self.confirmation is not None,
            inp.pick_sla_seconds,
            kind="pick_late",
            key=f"pick_late:{ref.shipment_no}:{attempt}",
            what=f"pick list #{floor.batch_id} not confirmed",
        )
        assert self.confirmation is not None
        outcome = await ctx.local(
            WarehouseActivities.record_pick,
            PickRecord(
                ref=ref,
                attempt=attempt,
                confirmation=self.confirmation,
                ship_partial=inp.allow_partial,
            ),
            summary=f"record the pick of shipment {ref.shipment_no}",
        )
        self.awaiting = None
        self.picks_recorded += 1
        ships = not outcome.short or (inp.allow_partial and outcome.picked > 0)
        if ships:
            # Waiting for packages before the alert below: the database already says
            # packed, so the floor may send them while the alert is being raised.
            ctx.moved(OrderStatus.PACKED)
            self.awaiting = "packages"
        if outcome.short and workflow.patched("floor-short-pick-alert"):
            await self._discrepancy(ref, attempt, outcome)
        if not ships:
            return None
        await self._wait(
            lambda: self.packages is not None,
            inp.pack_sla_seconds,
            kind="pack_stalled",
            key=f"pack_stalled:{ref.shipment_no}:{attempt}",
            what=f"shipment {ref.shipment_no} picked but not packed",
        )
        assert self.packages is not None
        parcels = self.packages.packages
        packed = await ctx.local(
            WarehouseActivities.record_packages,
            PackRecord(ref=ref, attempt=attempt, packages=parcels),
            summary=f"record {len(parcels)} package(s) of shipment {ref.shipment_no}",
        )
        self.awaiting = None
        self.packs_recorded += 1
        return Picked(packed=packed, parcels=parcels, short=bool(outcome.short))

    async def _discrepancy(self, ref: OrderRef, attempt: int, outcome: PickOutcome) -> None:
        """A short pick means the shelf holds less than the books: one warning for ops."""
        short = ", ".join(f"{sku} x{n}" for sku, n in sorted(outcome.short.items()))
        off = ", ".join(f"{sku} x{n}" for sku, n in sorted(outcome.written_off.items()))
        kept = {sku: n - outcome.written_off.get(sku, 0) for sku, n in outcome.short.items()}
        left = ", ".join(f"{sku} x{n}" for sku, n in sorted(kept.items()) if n > 0)
        await self.ctx.alert(
            "stock_discrepancy",
            "warning",
            f"order {self.ctx.order_id} shipment {ref.shipment_no}: picked short ({short}); "
            + (f"written off on hand: {off}" if off else "nothing written off")
            + (f"; not written off (reserved by other orders), count it: {left}" if left else ""),
            key=f"stock_discrepancy:{ref.shipment_no}:{attempt}",
        )

    async def _wait(
        self, ready: Callable[[], bool], sla_seconds: float, *, kind: str, key: str, what: str
    ) -> None:
        """Wait for people (a cancel interrupts); past the SLA one warning alert, deduplicated
        by `key`, and the order keeps waiting."""
        ctx = self.ctx
        sla = timedelta(seconds=sla_seconds)
        if await ctx.wait(ready, sla, timer=f"{what}: alert ops"):
            return
        await ctx.alert(
            kind,
            "warning",
            f"order {ctx.order_id}: {what} within {sla}; the order keeps waiting",
            key=key,
        )
        while not await ctx.wait(ready, _KEEP_WAITING, timer=f"{what}: keep waiting"):
            pass
