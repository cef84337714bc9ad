"""Validation rules, one table row per rule."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from domain.facts import CustomerFacts, ProductFacts
from domain.orders import OrderIn
from domain.validation import validate_order

TODAY = date(2026, 11, 26)
CUSTOMER = CustomerFacts("C1", "standard", "active", Decimal("1000"), address_complete=True)
PRODUCTS = {
    "A": ProductFacts("A", True, Decimal("10"), Decimal("8"), pack_size=1, min_order_qty=1),
    "P6": ProductFacts("P6", True, Decimal("10"), Decimal("8"), pack_size=6, min_order_qty=12),
    "OLD": ProductFacts("OLD", False, Decimal("10"), Decimal("8"), pack_size=1, min_order_qty=1),
}


def order(lines: list[tuple[str, int]], **kw: object) -> OrderIn:
    return OrderIn.model_validate(
        {"customer_code": "C1", "lines": [{"sku": s, "quantity": q} for s, q in lines], **kw}
    )


@pytest.mark.parametrize(
    ("lines", "extra", "customer", "expected"),
    [
        ([("A", 1)], {}, CUSTOMER, set()),
        ([("P6", 12)], {}, CUSTOMER, set()),
        ([("ZZZ", 1)], {}, CUSTOMER, {(("lines", 0, "sku"), "unknown_sku")}),
        ([("OLD", 1)], {}, CUSTOMER, {(("lines", 0, "sku"), "inactive_sku")}),
        ([("A", 0)], {}, CUSTOMER, {(("lines", 0, "quantity"), "quantity_not_positive")}),
        ([("A", -3)], {}, CUSTOMER, {(("lines", 0, "quantity"), "quantity_not_positive")}),
        ([("P6", 6)], {}, CUSTOMER, {(("lines", 0, "quantity"), "below_min_order_qty")}),
        ([("P6", 13)], {}, CUSTOMER, {(("lines", 0, "quantity"), "pack_size_multiple")}),
        ([("A", 1), ("A", 2)], {}, CUSTOMER, {(("lines", 1, "sku"), "duplicate_sku")}),
        (
            [("A", 1)],
            {"requested_delivery_date": "2026-11-25"},
            CUSTOMER,
            {(("requested_delivery_date",), "date_in_past")},
        ),
        ([("A", 1)], {"requested_delivery_date": "2026-11-26"}, CUSTOMER, set()),
        ([("A", 1)], {}, None, {(("customer_code",), "unknown_customer")}),
        (
            [("A", 1)],
            {},
            CustomerFacts("C1", "gold", "on_hold", Decimal(0), True),
            {(("customer_code",), "customer_on_hold")},
        ),
        (
            [("A", 1)],
            {},
            CustomerFacts("C1", "gold", "active", Decimal(0), False),
            {(("ship_to",), "ship_to_missing")},
        ),
    ],
)
def test_rule(lines, extra, customer, expected):
    problems = validate_order(order(lines, **extra), customer, PRODUCTS, TODAY)
    assert {(tuple(p.loc), p.code) for p in problems} == expected
    assert all(p.message for p in problems)


def test_all_problems_are_collected_not_just_the_first():
    problems = validate_order(
        order([("ZZZ", 1), ("P6", 7), ("A", 0)], requested_delivery_date="2020-01-01"),
        None,
        PRODUCTS,
        TODAY,
    )
    assert len(problems) == 6  # customer, date, unknown sku, moq, pack size, quantity
