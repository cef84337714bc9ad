"""Approval routing and credit control."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.approvals import RoutingRule
from domain.credit import assess_credit
from domain.facts import CreditFacts
from domain.routing import DEFAULT_RULES, RoutingFacts, route


def roles(total: str | Decimal, **reasons: tuple[str, ...]) -> list[str]:
    return [lvl.role for lvl in route(RoutingFacts(Decimal(total), reasons), DEFAULT_RULES)]


def test_touchless_when_nothing_applies():
    assert route(RoutingFacts(Decimal("99999.99")), DEFAULT_RULES) == []


def test_each_condition_routes_to_its_role():
    assert roles("1", credit_over_limit=("over",)) == ["credit_controller"]
    assert roles("1", receivable_overdue=("late",)) == ["credit_controller"]
    assert roles("1", price_below_floor=("floor",)) == ["sales_manager"]
    assert roles("1", discount_beyond_max=("deep",)) == ["sales_manager"]
    assert roles("100000.00") == []
    assert roles("100000.01") == ["sales_manager"]
    assert roles("500000.01") == ["sales_manager", "director"]
    assert roles("1", special_instructions=("note",)) == ["ops"]


def test_combined_conditions_form_one_chain_without_duplicates():
    levels = route(
        RoutingFacts(
            Decimal("600000"),
            {
                "credit_over_limit": ("over",),
                "receivable_overdue": ("late",),
                "price_below_floor": ("floor",),
                "special_instructions": ("note",),
            },
        ),
        DEFAULT_RULES,
    )
    assert [lv.role for lv in levels] == ["credit_controller", "sales_manager", "director", "ops"]
    assert [lv.level for lv in levels] == [1, 2, 3, 4]
    assert levels[0].reason == "over; late"
    assert levels[1].reason == "floor; total 600,000.00 above 100,000.00"


def test_the_table_decides_order_and_timeout_policy():
    rules = [
        RoutingRule(condition="special_instructions", role="ops", position=1, on_timeout="approve"),
        RoutingRule(condition="credit_over_limit", role="credit_controller", position=5),
    ]
    levels = route(
        RoutingFacts(Decimal(1), {"credit_over_limit": ("x",), "special_instructions": ("y",)}),
        rules,
    )
    assert [(lv.role, lv.on_timeout) for lv in levels] == [
        ("ops", "approve"),
        ("credit_controller", "reject"),
    ]


def test_a_total_rule_needs_its_threshold():
    with pytest.raises(ValidationError):
        RoutingRule(condition="total_above", role="director")
    with pytest.raises(ValidationError):
        RoutingRule(condition="credit_over_limit", role="director", threshold=Decimal(1))


conditions = st.sampled_from(
    [
        "credit_over_limit",
        "receivable_overdue",
        "price_below_floor",
        "discount_beyond_max",
        "special_instructions",
    ]
)


@given(
    st.decimals(min_value=0, max_value=10**9, places=2),
    st.dictionaries(conditions, st.just(("why",))),
)
def test_routing_is_deterministic_ordered_and_duplicate_free(total, reasons):
    facts = RoutingFacts(total, reasons)
    chain = route(facts, DEFAULT_RULES)
    assert chain == route(facts, DEFAULT_RULES)
    names = [lv.role for lv in chain]
    assert len(names) == len(set(names))
    order = ["credit_controller", "sales_manager", "director", "ops"]
    assert names == sorted(names, key=order.index)
    if "price_below_floor" in reasons:
        assert "sales_manager" in names


def test_credit_exposure_and_overdue():
    facts = CreditFacts(Decimal("500000"), Decimal("300000"), max_days_overdue=3)
    v = assess_credit(Decimal("800000"), facts, Decimal("12000"), grace_days=7)
    assert v.exposure == Decimal("812000")
    assert v.reasons == ["exposure 812,000.00 over limit 800,000.00"]
    overdue = CreditFacts(Decimal(0), Decimal(0), max_days_overdue=8)
    v = assess_credit(Decimal("900000"), overdue, Decimal(1), grace_days=7)
    assert v.reasons == ["receivable overdue by 8 days (grace 7 days)"]
    assert v.available == Decimal("899999")
