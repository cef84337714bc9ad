"""Check and price a draft order against the catalogue: the one place intake (POST /orders,
imports, the price preview) and amendments get their rules from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from db import repo
from db.models import Customer, OrderLine
from domain.orders import OrderIn
from domain.pricing import PricedOrder, PriceRules, price_order
from domain.problems import Problem
from domain.validation import validate_order


@dataclass
class Quote:
    """An order checked and priced against the catalogue, before anything is written."""

    problems: list[Problem]
    availability: list[dict[str, Any]]
    customer: Customer | None
    priced: PricedOrder | None
    rules_version: str
    snapshot: repo.RuleSnapshot

    @property
    def routing_version(self) -> int:
        return self.snapshot.versions.get("routing", 0)

    @property
    def rules_label(self) -> str:
        """What an order records as the rules it was priced and routed under."""
        return f"{self.rules_version}/routing:{self.routing_version}"


# One per process: it re-reads the rule versions for every order, so it is never stale.
RULES = repo.RuleCache()


async def quote(session: AsyncSession, body: OrderIn, today: date) -> Quote:
    """Validate and price a draft order; the same for POST /orders and the price preview."""
    snapshot = await RULES.get(session)
    customer_row = await session.get(Customer, body.customer_code)
    skus = [line.sku for line in body.lines]
    products = await repo.load_products(session, skus)
    rules = snapshot.price_rules(customer_row.tier, skus) if customer_row else PriceRules()
    special = snapshot.special_prices(customer_row.code, skus) if customer_row else {}
    customer = repo.customer_facts(customer_row, special)
    problems = validate_order(body, customer, products, today)
    stock = await repo.load_stock(session, skus)
    availability = []
    for line in body.lines:
        facts = stock.get(line.sku)
        available = facts.available if facts else 0
        availability.append(
            {
                "sku": line.sku,
                "available": available,
                "short": max(line.quantity - available, 0),
                "expected_date": str(facts.next_receipt)
                if facts and facts.next_receipt and line.quantity > available
                else None,
            }
        )
    priced = None
    if not problems:
        assert customer is not None
        try:
            priced = price_order(
                [(ln.sku, ln.quantity, ln.unit_price) for ln in body.lines],
                products,
                customer,
                rules,
                today,
            )
        except ValidationError as err:
            # A price list above the list price can still push an amount past NUMERIC(14,2).
            problems = [
                Problem(
                    loc=["lines"],
                    code="amount_too_large",
                    message=f"the priced order does not fit an amount: {err.errors()[0]['msg']}",
                )
            ]
    return Quote(problems, availability, customer_row, priced, rules.version, snapshot)


def line_values(order_id: str, priced: PricedOrder) -> list[dict[str, Any]]:
    """The order's line rows for a priced order, as the columns' values (one multi-row
    INSERT for a new order: services/intake.py)."""
    return [
        {
            "order_id": order_id,
            "line_no": p.line_no,
            "sku": p.sku,
            "quantity": p.quantity,
            "list_price": p.list_price,
            "unit_price": p.unit_price,
            "line_total": p.line_total,
            "price_rule": p.price_rule,
            "override_deviation": p.override_deviation,
            "below_floor": p.below_floor,
            "discount_beyond_max": p.discount_beyond_max,
            "reserved_qty": 0,
            "shipped_qty": 0,
        }
        for p in priced.lines
    ]


def line_rows(order_id: str, priced: PricedOrder) -> list[OrderLine]:
    """The order's line rows for a priced order (amended lines)."""
    return [OrderLine(**values) for values in line_values(order_id, priced)]
