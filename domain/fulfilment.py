"""Reserve, pick and pack: the fulfilment steps' messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from domain.approvals import Assessment, AssessRequest
from domain.base import Model
from domain.orders import OrderRef
from domain.shipping import Parcel
from domain.types import Code40, Count, DbId, Name100


class ReserveResult(Model):
    fully_reserved: bool
    # Units reserved and not yet shipped: what a partial shipment can take now.
    ready_units: int = 0
    short: dict[str, int] = Field(default_factory=dict)
    # Make-to-order lines waiting for production: SKU -> production order id.
    in_production: dict[str, int] = Field(default_factory=dict)


class PackResult(Model):
    packages: int


class PrepareRequest(Model):
    """Reserve, and when the shipment can go, pick and pack it: one transaction."""

    ref: OrderRef
    # Ship what is reserved when part of the order is short (partial shipment allowed).
    ship_partial: bool = False
    # False (manual warehouse mode): reserve only; people pick and pack.
    pick: bool = True


class Prepared(Model):
    reserved: ReserveResult
    packed: PackResult | None = None  # None: not picked (waiting for stock)


class FirstPassRequest(Model):
    """Assess the order and, when it needs no approval, prepare its first shipment."""

    assess: AssessRequest
    ship_partial: bool = False
    pick: bool = True


class FirstPass(Model):
    assessment: Assessment
    prepared: Prepared | None = None  # None: rejected or waiting for approval


class Compensation(Model):
    order_id: str
    step: Literal["reservation", "pick_list", "shipment", "invoice"]
    reason: str = ""
    # Undo only shipments (and their pick lists and invoices) from this number on: the ones
    # before it are with the customer (partial shipment).
    from_shipment: int = 1


# ---- the warehouse floor (manual mode, docs/warehouse.md) ------------------------------


class FloorRequest(Model):
    """Put a shipment's reserved lines on the floor: its own pick list, or into a wave."""

    ref: OrderRef
    attempt: int = 1


class FloorList(Model):
    """Where the floor picks a shipment: `batch_id` is the list people see (its own or the
    wave's); a wave still forming goes to the floor at `release_at` at the latest."""

    pick_list_id: int
    batch_id: int
    kind: Literal["single", "wave"]
    release_at: datetime | None = None
    # The same moment as seconds from now by the database's clock: the workflow's timer
    # uses this, so a worker's clock (or a time-skipping test server) cannot shift it.
    release_in_seconds: float | None = None


class PickedLine(Model):
    sku: Code40
    picked: Count
    # A wave holding the SKU for several orders: which order's line this is.
    order_id: Code40 | None = None


class PickConfirmIn(Model):
    """`POST /pick-lists/{id}/confirm`: what was really picked, per line."""

    lines: Annotated[list[PickedLine], Field(min_length=1, max_length=1000)]


class PickConfirmation(Model):
    """The `confirm_pick` Update: this order's part of a confirmed pick list."""

    batch_id: DbId
    lines: list[PickedLine]
    by: Name100 = "unknown"


class PickRecord(Model):
    ref: OrderRef
    attempt: int = 1
    confirmation: PickConfirmation
    # Ship what was picked when it is short (partial shipment allowed).
    ship_partial: bool = False


class PickOutcome(Model):
    requested: int
    picked: int
    short: dict[str, int] = Field(default_factory=dict)
    # Of the short units, how many were taken off on hand (not on the shelf, audited).
    written_off: dict[str, int] = Field(default_factory=dict)


class PackagesIn(Model):
    """`POST /orders/{id}/packages`: the parcels the picked goods went into."""

    packages: Annotated[list[Parcel], Field(min_length=1, max_length=100)]


class PackagesGiven(Model):
    """The `give_packages` Update."""

    packages: list[Parcel]
    by: Name100 = "unknown"


class PackRecord(Model):
    ref: OrderRef
    attempt: int = 1
    packages: list[Parcel]
