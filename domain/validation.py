"""Validation at intake: every problem of an order, collected, each with loc, code and words."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from domain.facts import CustomerFacts, ProductFacts
from domain.orders import OrderIn
from domain.problems import Problem
from domain.types import MONEY_MAX


def validate_order(
    order: OrderIn,
    customer: CustomerFacts | None,
    products: dict[str, ProductFacts],
    today: date,
) -> list[Problem]:
    """All problems of `order` against the catalogue; an empty list means it may start."""
    problems: list[Problem] = []
    problems += _customer_problems(order, customer)
    if order.requested_delivery_date is not None and order.requested_delivery_date < today:
        problems.append(
            Problem(
                loc=["requested_delivery_date"],
                code="date_in_past",
                message=f"requested delivery date {order.requested_delivery_date} is before "
                f"today ({today})",
            )
        )
    seen: dict[str, int] = {}
    for i, line in enumerate(order.lines):
        if line.sku in seen:
            problems.append(
                Problem(
                    loc=["lines", i, "sku"],
                    code="duplicate_sku",
                    message=f"SKU {line.sku} already appears on line {seen[line.sku]}; "
                    "duplicate SKUs are refused, put the whole quantity on one line",
                )
            )
        else:
            seen[line.sku] = i
        # Every problem of the line, also for a duplicate or unknown SKU: a caller fixes
        # the whole line in one go.
        problems += _line_problems(i, line.sku, line.quantity, products.get(line.sku))
    problems += _amount_problems(order, customer, products)
    return problems


def _amount_problems(
    order: OrderIn, customer: CustomerFacts | None, products: dict[str, ProductFacts]
) -> list[Problem]:
    """Line totals and the order total must fit NUMERIC(14,2). Checked at the highest price
    the line can get (list, customer or requested price), so a too-large order is refused
    here, with the line named, and never reaches the database."""
    problems: list[Problem] = []
    total = Decimal(0)
    for i, line in enumerate(order.lines):
        product = products.get(line.sku)
        if product is None or line.quantity <= 0:
            continue
        special = customer.special_prices.get(line.sku) if customer else None
        price = max(p for p in (product.unit_price, line.unit_price, special) if p is not None)
        amount = price * line.quantity
        total += amount
        if amount > MONEY_MAX:
            problems.append(
                Problem(
                    loc=["lines", i, "quantity"],
                    code="amount_too_large",
                    message=f"quantity {line.quantity} at {price} comes to {amount}, above "
                    f"the largest amount an order can hold ({MONEY_MAX})",
                )
            )
    if not problems and total > MONEY_MAX:
        problems.append(
            Problem(
                loc=["lines"],
                code="amount_too_large",
                message=f"the lines come to {total}, above the largest amount an order can "
                f"hold ({MONEY_MAX})",
            )
        )
    return problems


def _customer_problems(order: OrderIn, customer: CustomerFacts | None) -> list[Problem]:
    if customer is None:
        return [
            Problem(
                loc=["customer_code"],
                code="unknown_customer",
                message=f"no customer with code {order.customer_code!r}",
            )
        ]
    problems = []
    if customer.status == "on_hold":
        problems.append(
            Problem(
                loc=["customer_code"],
                code="customer_on_hold",
                message=f"customer {customer.code} is on credit hold",
            )
        )
    elif customer.status != "active":
        problems.append(
            Problem(
                loc=["customer_code"],
                code="customer_inactive",
                message=f"customer {customer.code} is {customer.status}",
            )
        )
    if order.ship_to is None and not customer.address_complete:
        problems.append(
            Problem(
                loc=["ship_to"],
                code="ship_to_missing",
                message="no ship-to address given and the customer has no complete address",
            )
        )
    return problems


def _line_problems(i: int, sku: str, qty: int, product: ProductFacts | None) -> list[Problem]:
    loc: list[str | int] = ["lines", i]
    problems = []
    if product is None:
        problems.append(
            Problem(loc=[*loc, "sku"], code="unknown_sku", message=f"no product {sku!r}")
        )
    elif not product.active:
        problems.append(
            Problem(loc=[*loc, "sku"], code="inactive_sku", message=f"product {sku} is inactive")
        )
    if qty <= 0:
        problems.append(
            Problem(
                loc=[*loc, "quantity"],
                code="quantity_not_positive",
                message=f"quantity must be greater than 0, got {qty}",
            )
        )
    if qty <= 0 or product is None:
        return problems
    if qty < product.min_order_qty:
        problems.append(
            Problem(
                loc=[*loc, "quantity"],
                code="below_min_order_qty",
                message=f"quantity {qty} is below the minimum order quantity "
                f"{product.min_order_qty} of {sku}",
            )
        )
    if qty % product.pack_size:
        problems.append(
            Problem(
                loc=[*loc, "quantity"],
                code="pack_size_multiple",
                message=f"quantity {qty} is not a multiple of the pack size "
                f"{product.pack_size} of {sku}",
            )
        )
    return problems
