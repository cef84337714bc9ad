"""Payload models shared by the API, the workflows and the activities.

Every workflow, activity, signal and update takes one model and returns one model, so a field
can be added without breaking histories in flight (add fields with defaults, never remove).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

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

Role = Literal["admin", "sales", "credit_controller", "sales_manager", "director", "ops", "channel"]
ROLES: tuple[str, ...] = get_args(Role)

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Computed amounts (outputs, activity payloads). What a caller sends uses domain/types.py.
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class Problem(Model):
    """One thing wrong with an order: where, a stable code, and words for a person."""

    loc: list[str | int]
    code: str
    message: str


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


class ApprovalLevel(Model):
    level: int
    role: str
    reason: str
    on_timeout: Literal["reject", "approve"] = "reject"


class RoutingRule(Model):
    """One row of the routing table: when `condition` holds, `role` must approve."""

    condition: Literal[
        "credit_over_limit",
        "receivable_overdue",
        "price_below_floor",
        "discount_beyond_max",
        "total_above",
        "special_instructions",
    ]
    role: Literal["credit_controller", "sales_manager", "director", "ops", "admin"]
    position: int = Field(default=100, ge=0, le=10_000)
    threshold: Price | None = None
    on_timeout: Literal["reject", "approve"] = "reject"

    @model_validator(mode="after")
    def _threshold_only_for_totals(self) -> RoutingRule:
        if (self.condition == "total_above") != (self.threshold is not None):
            raise ValueError("threshold is required for total_above and only for it")
        return self


class SlaPolicy(Model):
    """Per-level approval timers, fixed for an order when it starts."""

    reminder_seconds: float = 4 * 3600
    escalation_seconds: float = 24 * 3600
    timeout_seconds: float = 72 * 3600
    escalate_to: dict[str, str] = Field(
        default_factory=lambda: {
            "sales_manager": "director",
            "credit_controller": "director",
            "ops": "admin",
            "director": "admin",
        }
    )


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


class OrderRef(Model):
    order_id: str
    # Which shipment of the order a warehouse or billing step is for (partial shipment).
    shipment_no: int = 1


class Amendment(Model):
    """The `amend` update: what changes and who asks."""

    change: AmendIn
    by: str = "unknown"
    role: str = ""


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


class AssessRequest(Model):
    order_id: str
    routing: list[RoutingRule]
    overdue_grace_days: int = 7


class Assessment(Model):
    """Result of the credit check and approval routing inside the workflow."""

    ok: bool
    problems: list[Problem] = Field(default_factory=list)
    levels: list[ApprovalLevel] = Field(default_factory=list)
    total: Money = Decimal("0")


class StatusChange(Model):
    """Write a status (and its timeline event) for an order, idempotently by step key."""

    order_id: str
    status: OrderStatus
    step_key: str
    detail: str = ""
    actor: str = "system"
    awaiting_role: str | None = None


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


class Decision(Model):
    decision: Literal["approve", "reject"]
    comment: str = ""
    by: str = "unknown"
    role: str = ""


class DecisionRecord(Model):
    order_id: str
    level: int
    role: str
    status: Literal[
        "pending", "approved", "rejected", "timed_out", "escalated", "cancelled", "superseded"
    ]
    decided_by: str | None = None
    comment: str = ""
    reason: str = ""
    # The order total the decision was given for: it does not cover a larger one.
    amount: Money | None = None


class CancelRequest(Model):
    reason: str = ""
    by: str = "unknown"


class Compensation(Model):
    order_id: str
    step: Literal["reservation", "pick_list", "shipment", "invoice"]
    reason: str = ""
    # Undo only shipments (and their pick lists and invoices) from this number on: the ones
    # before it are with the customer (partial shipment).
    from_shipment: int = 1


class Alert(Model):
    dedup_key: str
    kind: str
    severity: Literal["info", "warning", "critical"] = "warning"
    order_id: str | None = None
    summary: str
    detail: str = ""


class Notice(Model):
    """A message to a role (approvers) through the outbound path."""

    dedup_key: str
    role: str
    order_id: str
    subject: str
    body: str = ""


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


class ImportInput(Model):
    import_id: int
    batch_size: int = 50
    # A pause between batches bounds how fast an import starts order workflows.
    pause_seconds: float = 0.05


class ImportProgress(Model):
    remaining: int
