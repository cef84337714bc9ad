"""Carrier booking, tracking and delivery: the shipping steps' messages."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from domain.base import Model
from domain.orders import Address, StatusChange


class ShipmentRequest(Model):
    order_id: str
    shipment_no: int = 1
    packages: int = 1
    ship_to: Address | None = None


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
