"""Approval routing and decisions: the messages of the approval chain."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from domain.base import Model, Money
from domain.problems import Problem
from domain.scopes import RuleScope
from domain.types import Money as Price


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
    # Which customers the rule applies to (tier, channel, age, payment record); None: all.
    scope: RuleScope | None = None

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
