"""Carrier booking, tracking and delivery: the shipping steps' messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from domain.base import Model
from domain.orders import Address, StatusChange

# A parcel's weight and sides: positive, at most what a pallet carrier takes.
Kilograms = Annotated[Decimal, Field(gt=0, le=2000, max_digits=8, decimal_places=2)]
Centimetres = Annotated[Decimal, Field(gt=0, le=1000, max_digits=8, decimal_places=1)]


class Parcel(Model):
    """A package the warehouse floor packed (manual mode): what the carrier booking takes."""

    weight_kg: Kilograms
    length_cm: Centimetres
    width_cm: Centimetres
    height_cm: Centimetres


class ShipmentRequest(Model):
    order_id: str
    shipment_no: int = 1
    packages: int = 1
    ship_to: Address | None = None
    # Manual mode: the packages as weighed and measured on the floor (auto: counted only).
    parcels: list[Parcel] = Field(default_factory=list)


class Booking(Model):
    tracking_number: str
    carrier: str
    booked_at: datetime


class TrackRequest(Model):
    tracking_number: str
    booked_at: datetime


class TrackResult(Model):
    status: Literal["booked", "in_transit", "delivered", "exception"]
    at: datetime | None = None


class ShipmentRecord(Model):
    order_id: str
    shipment_no: int
    booking: Booking
    packages: int


class DeliveryEvent(Model):
    tracking_number: str
    status: Literal["in_transit", "delivered", "exception"]
    at: datetime | None = None


class DeliveryClose(Model):
    """The last delivery of an order and the order's completion: one transaction."""

    event: DeliveryEvent
    completion: StatusChange


class ExceptionDecision(Model):
    """Ops' call on a shipment the carrier reported an exception for."""

    action: Literal["lost", "wait"]
    comment: str = ""
    by: str = "unknown"


class ShipmentLoss(Model):
    order_id: str
    tracking_number: str
    by: str
    comment: str = ""
