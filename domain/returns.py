"""Returns (RMA): statuses, reasons, the approval rule, the quantity rule and the credit.

Pure functions and message types: the API (at request time) and ReturnWorkflow (replayed
at any time) call the same rules, so the rule applied to a return is decided from facts
fixed when it was requested (its amount, the days since delivery, the policy of the day).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Protocol

from pydantic import Field, StringConstraints

from domain.base import Model, Money
from domain.money import q2
from domain.problems import Problem
from domain.status import OrderStatus
from domain.types import Code40, Name100, Printable, Quantity, Text2000


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REFUSED = "refused"
    RECEIVED = "received"
    CREDITED = "credited"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# A return ends in one of these; the others still wait for a person or the goods.
RETURN_FINAL = frozenset({ReturnStatus.REFUSED, ReturnStatus.COMPLETED, ReturnStatus.CANCELLED})
# Returns whose requested quantities are still claimed against the order's shipped units
# (before the goods arrive); once received, what actually came back counts.
RETURN_OPEN = frozenset(
    {ReturnStatus.REQUESTED, ReturnStatus.AWAITING_APPROVAL, ReturnStatus.APPROVED}
)
# A return is possible once goods have left the warehouse (and not for a failed order: its
# lost shipment was credited already).
RETURNABLE_ORDER = frozenset(
    {OrderStatus.SHIPPED, OrderStatus.INVOICED, OrderStatus.DELIVERED, OrderStatus.COMPLETED}
)


class ReturnReason(StrEnum):
    DAMAGED = "damaged"
    WRONG_ITEM = "wrong_item"
    NOT_NEEDED = "not_needed"
    DEFECTIVE = "defective"
    OTHER = "other"


Condition = Literal["restock", "quarantine", "scrap"]
# Units in these locations are in the warehouse but not available to any order.
HELD_LOCATIONS: tuple[Condition, ...] = ("quarantine", "scrap")


# ---- what a caller sends ------------------------------------------------------------


class ReturnLineIn(Model):
    sku: Code40
    quantity: Quantity


class ReturnIn(Model):
    """POST /orders/{id}/returns."""

    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=200)]
    reason: ReturnReason
    note: Text2000 | None = None


class InspectedLine(Model):
    sku: Code40
    quantity: Quantity
    condition: Condition


class ReceiveIn(Model):
    """POST /returns/{id}/receive: what arrived, line by line, and where it goes."""

    lines: Annotated[list[InspectedLine], Field(min_length=1, max_length=200)]


class ReturnDecisionIn(Model):
    decision: Literal["approve", "reject"]
    comment: Text2000 = ""


CancelReason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), Printable()
]


class ReturnCancelIn(Model):
    """POST /returns/{id}/cancel: why the return is withdrawn (before the goods arrive)."""

    reason: CancelReason


# ---- workflow payloads --------------------------------------------------------------


class ReturnPolicy(Model):
    """The approval rule of the day, fixed for a return when it is requested."""

    auto_days: int = 30
    auto_amount: Money = Decimal("1000.00")
    role: str = "sales_manager"
    approval_timeout_seconds: float = 72 * 3600
    receive_timeout_seconds: float = 30 * 24 * 3600
    # One reminder to the approver role this long into the wait (None, or not before the
    # timeout: none). Absent from returns requested before reminders existed.
    reminder_seconds: float | None = None


class PolicySettings(Protocol):
    """The settings a return policy is read from (services.config.Settings has them)."""

    @property
    def returns_auto_days(self) -> int: ...
    @property
    def returns_auto_amount(self) -> Decimal: ...
    @property
    def returns_approver_role(self) -> str: ...
    @property
    def returns_approval_timeout_seconds(self) -> float: ...
    @property
    def returns_receive_timeout_seconds(self) -> float: ...
    @property
    def approval_reminder_seconds(self) -> float: ...


def policy_of(s: PolicySettings) -> ReturnPolicy:
    """Today's return policy (fixed on each return when its workflow starts)."""
    return ReturnPolicy(
        auto_days=s.returns_auto_days,
        auto_amount=s.returns_auto_amount,
        role=s.returns_approver_role,
        approval_timeout_seconds=s.returns_approval_timeout_seconds,
        receive_timeout_seconds=s.returns_receive_timeout_seconds,
        reminder_seconds=s.approval_reminder_seconds,
    )


class ReturnLine(Model):
    sku: str
    quantity: int
    unit_price: Money


class ReturnWorkflowInput(Model):
    rma_id: str
    order_id: str
    amount: Money
    # Whole days since the order's goods were delivered (or, not yet delivered, shipped).
    days_since: int
    policy: ReturnPolicy
    lines: list[ReturnLine]


class ReturnStep(Model):
    """A status change of a return (and its event on the order's timeline)."""

    rma_id: str
    order_id: str
    status: ReturnStatus
    detail: str = ""
    actor: str = "system"
    awaiting_role: str | None = None
    # An approver's comment (approved, refused) or why the return stopped (cancelled).
    comment: str | None = None
    # The approval rule's reason, when the return waits for a person.
    approval_reason: str | None = None


class RmaRef(Model):
    rma_id: str
    order_id: str


class ReturnDecision(Model):
    decision: Literal["approve", "reject"]
    comment: str = ""
    by: Name100
    role: str


class ReturnCancel(Model):
    reason: str
    by: Name100
    role: str


class Receipt(Model):
    rma_id: str
    order_id: str
    lines: list[InspectedLine]
    by: str


class ReturnState(Model):
    rma_id: str
    order_id: str
    status: ReturnStatus
    awaiting_role: str | None = None
    credit_notes: list[str] = []
    failure: str | None = None


# ---- rules --------------------------------------------------------------------------


def approval_reason(inp: ReturnWorkflowInput) -> str | None:
    """Why the return needs a person (None: approved by rule): late, or too large."""
    p = inp.policy
    why = []
    if inp.days_since > p.auto_days:
        why.append(f"{inp.days_since} days after delivery (rule: within {p.auto_days})")
    if inp.amount > p.auto_amount:
        why.append(f"amount {inp.amount} above {p.auto_amount}")
    return "; ".join(why) or None


def quantity_problems(
    lines: list[ReturnLineIn], shipped: dict[str, int], returned: dict[str, int]
) -> list[Problem]:
    """Every line that asks for more than was shipped minus already returned."""
    problems: list[Problem] = []
    asked: dict[str, int] = {}
    for i, ln in enumerate(lines):
        asked[ln.sku] = asked.get(ln.sku, 0) + ln.quantity
        if ln.sku not in shipped:
            problems.append(
                Problem(
                    loc=["body", "lines", i, "sku"],
                    code="not_shipped",
                    message=f"line {i + 1}: {ln.sku} was not shipped on this order",
                )
            )
            continue
        left = shipped[ln.sku] - returned.get(ln.sku, 0)
        if asked[ln.sku] > left:
            problems.append(
                Problem(
                    loc=["body", "lines", i, "quantity"],
                    code="above_returnable",
                    message=f"line {i + 1}: {asked[ln.sku]} x {ln.sku} asked, but only "
                    f"{left} can be returned (shipped {shipped[ln.sku]}, already returned "
                    f"or in a return {returned.get(ln.sku, 0)})",
                )
            )
    return problems


def receipt_problems(expected: list[ReturnLine], lines: list[InspectedLine]) -> list[str]:
    """A receipt may hold only the return's SKUs, at most the quantities approved."""
    allowed = {ln.sku: ln.quantity for ln in expected}
    got: dict[str, int] = {}
    problems = []
    for ln in lines:
        got[ln.sku] = got.get(ln.sku, 0) + ln.quantity
    for sku, qty in got.items():
        if sku not in allowed:
            problems.append(f"{sku} is not on this return")
        elif qty > allowed[sku]:
            problems.append(f"{qty} x {sku} received, but the return is for {allowed[sku]}")
    return problems


def credit_value(
    received: dict[str, int], prices: dict[str, Decimal], discount: Decimal, ordered: Decimal
) -> Decimal:
    """What the goods that came back are worth, as invoices bill them: the order lines'
    unit prices less the order discount's pro-rata share (no tax is billed separately)."""
    value = sum((prices[sku] * qty for sku, qty in received.items()), Decimal(0))
    share = q2(discount * value / ordered) if ordered else Decimal(0)
    return q2(value - share)
