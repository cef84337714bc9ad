"""Credit control: exposure against the limit, and overdue receivables."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.facts import CreditFacts
from domain.money import fmt


@dataclass(frozen=True)
class CreditVerdict:
    exposure: Decimal
    available: Decimal
    over_limit: str | None = None
    overdue: str | None = None

    @property
    def reasons(self) -> list[str]:
        return [r for r in (self.over_limit, self.overdue) if r]

    @property
    def needs_approval(self) -> bool:
        return bool(self.reasons)


def exposure(facts: CreditFacts, this_order: Decimal) -> Decimal:
    """Open receivables + open orders not yet invoiced + this order."""
    return facts.open_receivables + facts.unbilled_open_orders + this_order


def assess_credit(
    limit: Decimal, facts: CreditFacts, this_order: Decimal, grace_days: int
) -> CreditVerdict:
    """Why, if at all, a credit controller must look at this order."""
    total = exposure(facts, this_order)
    over = f"exposure {fmt(total)} over limit {fmt(limit)}" if total > limit else None
    overdue = (
        f"receivable overdue by {facts.max_days_overdue} days (grace {grace_days} days)"
        if facts.max_days_overdue > grace_days
        else None
    )
    return CreditVerdict(total, limit - total, over, overdue)
