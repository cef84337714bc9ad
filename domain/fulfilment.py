"""Reserve, pick and pack: the fulfilment steps' messages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from domain.approvals import Assessment, AssessRequest
from domain.base import Model
from domain.orders import OrderRef


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


class Prepared(Model):
    reserved: ReserveResult
    packed: PackResult | None = None  # None: not picked (waiting for stock)


class FirstPassRequest(Model):
    """Assess the order and, when it needs no approval, prepare its first shipment."""

    assess: AssessRequest
    ship_partial: bool = False


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
