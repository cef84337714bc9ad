"""An order as it enters (bodies the API and the workflow share) and its workflow messages."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from domain.approvals import ApprovalLevel, DecisionRecord, RoutingRule, SlaPolicy
from domain.base import Model, Money
from domain.problems import Problem
from domain.status import OrderStatus
from domain.types import (
    Code20,
    Code40,
    CountryCode,
    LineQuantity,
    Name100,
    Name200,
    SaneDate,
    Text2000,
)
from domain.types import Money as Price


class Tier(StrEnum):
    STANDARD = "standard"
    SILVER = "silver"
    GOLD = "gold"


class Address(Model):
    line1: Name200
    city: Name100
    postal_code: Code20
    country: CountryCode


class OrderLineIn(Model):
    sku: Code40
    quantity: LineQuantity
    unit_price: Price | None = None


class OrderIn(Model):
    """The body of POST /orders: what a channel hands over."""

    customer_code: Code40
    channel: Code40 = "api"
    external_ref: Name200 | None = None
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)
    ship_to: Address | None = None
    requested_delivery_date: SaneDate | None = None
    special_instructions: Text2000 | None = None
    # Ship what is in stock now and the rest later; unset: the customer's setting decides.
    allow_partial_shipment: bool | None = None
    # normal | urgent; unset: the priority rules decide (domain/priority.py).
    priority: Literal["normal", "urgent"] | None = None


class AmendIn(Model):
    """The body of PATCH /orders/{id}: only what changes. `lines` replaces all lines."""

    lines: list[OrderLineIn] | None = Field(default=None, min_length=1, max_length=500)
    ship_to: Address | None = None
    requested_delivery_date: SaneDate | None = None
    comment: Text2000 = ""

    @model_validator(mode="after")
    def _something_changes(self) -> AmendIn:
        if self.lines is None and self.ship_to is None and self.requested_delivery_date is None:
            raise ValueError("give at least one of lines, ship_to, requested_delivery_date")
        return self


class PricedLine(Model):
    line_no: int
    sku: str
    quantity: int
    list_price: Money
    unit_price: Money
    line_total: Money
    price_rule: str
    # Set when the channel asked for its own price: how far it is from the computed one.
    override_deviation: Money | None = None
    below_floor: bool = False
    discount_beyond_max: bool = False


class OrderWorkflowInput(Model):
    """What an OrderWorkflow starts with; the rules in force are copied in so they stay put."""

    order_id: str
    customer_code: str
    channel: str
    total: Money
    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    # The routing table in force when the order started, and its version.
    routing: list[RoutingRule] = Field(default_factory=list)
    routing_version: int = 0
    overdue_grace_days: int = 7
    delivery_poll_seconds: float = 60.0
    backorder_max_seconds: float = 7 * 24 * 3600
    backorder_recheck_seconds: float = 3600.0
    # Longer than this in one waiting status raises an alert (the order keeps waiting).
    backorder_alert_seconds: float = 24 * 3600
    delivery_alert_seconds: float = 3 * 24 * 3600
    # Ship what is reserved while the rest waits (a second shipment follows).
    allow_partial: bool = False
    # How many lines the order has, for the step summaries in the Temporal UI (0: unknown,
    # orders started before it was sent).
    lines: int = 0
    # The warehouse mode when the order started (docs/warehouse.md); absent: auto.
    warehouse_mode: Literal["auto", "manual"] = "auto"
    pick_sla_seconds: float = 30 * 60
    pack_sla_seconds: float = 30 * 60
    # The workflow generation the order was started for (`PIPELINE`). Orders from before it
    # existed carry 0 and replay through their `workflow.patched()` markers; an order
    # started at 3 takes the combined steps with no patch marker at all (a marker costs two
    # history events and a visibility write per order: docs/performance.md).
    pipeline: int = 0


# The generation new orders start with (OrderWorkflowInput.pipeline); 3 = combined steps,
# the patch "combined-steps-v2" known from the input instead of from a marker.
PIPELINE = 3


class OrderRef(Model):
    order_id: str
    # Which shipment of the order a warehouse or billing step is for (partial shipment).
    shipment_no: int = 1


class Amendment(Model):
    """The `amend` update: what changes and who asks."""

    change: AmendIn
    by: str = "unknown"
    role: str = ""


class AmendRequest(Model):
    """An amendment as the workflow hands it to its activity."""

    order_id: str
    amend_id: str
    by: str
    change: AmendIn
    routing: list[RoutingRule] = Field(default_factory=list)
    overdue_grace_days: int = 7


class AmendResult(Model):
    ok: bool
    problems: list[Problem] = Field(default_factory=list)
    # What changed, in words (for the timeline and the answer).
    summary: str = ""
    lines_changed: bool = False
    total: Money = Decimal("0")
    levels: list[ApprovalLevel] = Field(default_factory=list)


class StatusChange(Model):
    """Write a status (and its timeline event) for an order, idempotently by step key."""

    order_id: str
    status: OrderStatus
    step_key: str
    detail: str = ""
    actor: str = "system"
    awaiting_role: str | None = None


class OrderState(Model):
    """What the workflow's query answers: the live state of the order."""

    order_id: str
    status: OrderStatus
    awaiting_role: str | None = None
    pending_level: int | None = None
    approvals: list[DecisionRecord] = Field(default_factory=list)
    tracking_numbers: list[str] = Field(default_factory=list)
    cancel_reason: str | None = None
    failure: str | None = None
    # Why the carrier booking waits for ops (retry or cancel), when it does.
    shipping_held: str | None = None
    # A shipment the carrier reported an exception for, waiting for ops to decide.
    exception_on: str | None = None
    amendments: int = 0


class CancelRequest(Model):
    reason: str = ""
    by: str = "unknown"
