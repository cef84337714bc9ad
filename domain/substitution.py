"""Messages of the `substitute` Update: a backordered order's lines of one SKU replaced by
one of its substitutes (workflows/substitution.py, activities/substitution.py)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from domain.base import Model, Money
from domain.problems import Problem


class Substitution(Model):
    """The `substitute` Update: replace the order's lines of `sku` by `substitute`, same
    quantity; `by` is who asked."""

    sku: str
    substitute: str
    by: str = "unknown"


class SubstituteRequest(Model):
    """A substitution as the workflow hands it to its activity. `key` makes it idempotent;
    `covered_total`: the order total its credit check and approvals covered (None: the
    order's total as it stands)."""

    order_id: str
    key: str
    sku: str
    substitute: str
    by: str
    covered_total: Money | None = None


class SubstituteResult(Model):
    """What the substitution did. `problems`: the request is wrong (nothing written, a 422);
    `refused`: the order cannot take it (nothing written, a 409)."""

    ok: bool
    problems: list[Problem] = Field(default_factory=list)
    refused: str | None = None
    summary: str = ""
    total: Money = Decimal("0")
    released_units: int = 0
