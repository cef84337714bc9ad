"""Approval routing and credit control."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from orderflow.domain.credit import assess_credit
from orderflow.domain.facts import CreditFacts
from orderflow.domain.routing import ROLE_ORDER, RoutingFacts, RoutingPolicy, route

POLICY = RoutingPolicy(manager_threshold=Decimal("100000"), director_threshold=Decimal("500000"))


def roles(facts: RoutingFacts) -> list[str]:
    return [lvl.role for lvl in route(facts, POLICY)]


def test_touchless_when_nothing_applies():
    assert route(RoutingFacts(total=Decimal("99999.99")), POLICY) == []


def test_each_condition_routes_to_its_role():
    assert roles(RoutingFacts(total=Decimal(1), credit_reasons=("over",))) == ["credit_controller"]
    assert roles(RoutingFacts(total=Decimal(1), price_reasons=("floor",))) == ["sales_manager"]
    assert roles(RoutingFacts(total=Decimal("100000.01"))) == ["sales_manager"]
    assert roles(RoutingFacts(total=Decimal("500000.01"))) == ["sales_manager", "director"]
    assert roles(RoutingFacts(total=Decimal(1), special_instructions=True)) == ["ops"]


def test_combined_conditions_form_one_chain_without_duplicates():
    levels = route(
        RoutingFacts(
            total=Decimal("600000"),
            credit_reasons=("over",),
            price_reasons=("floor",),
            special_instructions=True,
        ),
        POLICY,
    )
    assert [lv.role for lv in levels] == ["credit_controller", "sales_manager", "director", "ops"]
    assert [lv.level for lv in levels] == [1, 2, 3, 4]
    assert levels[1].reason == "floor; total 600,000.00 above 100,000.00"


@given(
    st.decimals(min_value=0, max_value=10**9, places=2), st.booleans(), st.booleans(), st.booleans()
)
def test_routing_is_deterministic_ordered_and_duplicate_free(total, credit, price, special):
    facts = RoutingFacts(
        total=total,
        credit_reasons=("c",) if credit else (),
        price_reasons=("p",) if price else (),
        special_instructions=special,
    )
    chain = roles(facts)
    assert chain == roles(facts)
    assert len(chain) == len(set(chain))
    assert chain == sorted(chain, key=ROLE_ORDER.index)
    if price:
        assert "sales_manager" in chain


def test_credit_exposure_and_overdue():
    facts = CreditFacts(Decimal("500000"), Decimal("300000"), max_days_overdue=3)
    v = assess_credit(Decimal("800000"), facts, Decimal("12000"), grace_days=7)
    assert v.exposure == Decimal("812000")
    assert v.reasons == ["exposure 812,000.00 over limit 800,000.00"]
    overdue = CreditFacts(Decimal(0), Decimal(0), max_days_overdue=8)
    v = assess_credit(Decimal("900000"), overdue, Decimal(1), grace_days=7)
    assert v.reasons == ["receivable overdue by 8 days (grace 7 days)"]
    assert v.available == Decimal("899999")
