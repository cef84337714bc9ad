"""Approval routing and credit control."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.approvals import RoutingRule
from domain.credit import assess_credit
from domain.facts import CreditFacts, CustomerRecord
from domain.routing import (
    DEFAULT_RULES,
    RoutingFacts,
    compare,
    facts_from_json,
    facts_to_json,
    route,
)
from domain.scopes import months_before


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


# -- rule scopes (issue 19) ----------------------------------------------------------------

TODAY = date(2026, 3, 31)


def record(**kw: object) -> CustomerRecord:
    base: dict[str, object] = {"tier": "standard", "channel": "api", "as_of": TODAY}
    base.update(kw)
    return CustomerRecord(**base)


def scoped(threshold: str, role: str = "sales_manager", **scope: object) -> RoutingRule:
    return RoutingRule.model_validate(
        {
            "condition": "total_above",
            "role": role,
            "position": 20,
            "threshold": threshold,
            "scope": scope or None,
        }
    )


# A long-standing good payer waits for a manager above 250,000; a new customer (first 3
# orders or under 90 days) or one who paid late in the last 6 months above 20,000.
CUSTOMER_RULES = [
    scoped(
        "250000.00",
        customer_age={"status": "established", "first_orders": 3, "younger_than_days": 90},
        payment_record={"status": "good", "months": 6},
    ),
    scoped("20000.00", customer_age={"status": "new", "first_orders": 3, "younger_than_days": 90}),
    scoped("20000.00", payment_record={"status": "late", "months": 6}),
]


def chain(total: str, rec: CustomerRecord | None, rules: list[RoutingRule]) -> list[str]:
    return [lv.role for lv in route(RoutingFacts(Decimal(total), customer=rec), rules)]


def test_good_long_standing_payer_gets_the_higher_threshold():
    veteran = record(prior_orders=40, first_order_on=date(2023, 1, 5))
    assert chain("200000.00", veteran, CUSTOMER_RULES) == []
    assert chain("250000.01", veteran, CUSTOMER_RULES) == ["sales_manager"]
    levels = route(RoutingFacts(Decimal("250000.01"), customer=veteran), CUSTOMER_RULES)
    assert (
        levels[0].reason
        == "total 250,000.01 above 250,000.00 (established customer, good payer (6 months))"
    )


def test_new_customer_by_orders_or_by_days_gets_the_stricter_one():
    by_orders = record(prior_orders=2, first_order_on=date(2023, 1, 5))
    by_days = record(prior_orders=40, first_order_on=TODAY - timedelta(days=89))
    first_ever = record(prior_orders=0, first_order_on=None)
    for rec in (by_orders, by_days, first_ever):
        assert chain("20000.01", rec, CUSTOMER_RULES) == ["sales_manager"], rec
        assert chain("20000.00", rec, CUSTOMER_RULES) == []
    ninety = record(prior_orders=3, first_order_on=TODAY - timedelta(days=90))
    assert chain("20000.01", ninety, CUSTOMER_RULES) == []  # the 4th order, 90 days on


def test_late_payment_counts_within_its_window_only():
    veteran = {"prior_orders": 40, "first_order_on": date(2023, 1, 5)}
    recent = record(**veteran, last_late_payment_on=date(2025, 9, 30))  # 6 months back
    old = record(**veteran, last_late_payment_on=date(2025, 9, 29))
    assert chain("20000.01", recent, CUSTOMER_RULES) == ["sales_manager"]
    assert chain("20000.01", old, CUSTOMER_RULES) == []
    assert chain("250000.01", recent, CUSTOMER_RULES) == ["sales_manager"]  # via the late rule


def test_tier_and_channel_scopes():
    rules = [scoped("1000.00", tiers=["gold", "silver"], channels=["webshop"])]
    assert chain("1000.01", record(tier="gold", channel="webshop"), rules) == ["sales_manager"]
    assert chain("1000.01", record(tier="standard", channel="webshop"), rules) == []
    assert chain("1000.01", record(tier="gold", channel="api"), rules) == []


def test_scoped_rules_do_not_hold_without_customer_facts_and_plain_rules_are_unchanged():
    assert chain("300000.00", None, CUSTOMER_RULES) == []
    assert roles("100000.01") == ["sales_manager"]  # DEFAULT_RULES take no facts
    assert chain("100000.01", record(), list(DEFAULT_RULES)) == ["sales_manager"]


@pytest.mark.parametrize(
    ("scope", "field"),
    [
        ({"customer_age": {"status": "new"}}, "customer_age"),
        ({"customer_age": {"status": "new", "first_orders": 0}}, "first_orders"),
        ({"payment_record": {"status": "late", "months": 0}}, "months"),
        ({"payment_record": {"status": "slow", "months": 3}}, "status"),
        ({"tiers": ["platinum"]}, "tiers"),
        ({"region": "north"}, "region"),
    ],
)
def test_bad_scopes_are_refused_naming_the_field(scope: dict[str, object], field: str):
    with pytest.raises(ValidationError) as err:
        scoped("1.00", **scope)
    assert any(field in map(str, e["loc"]) or field in e["msg"] for e in err.value.errors())


def test_months_before_clamps_to_the_month_end():
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 1, 15), 13) == date(2024, 12, 15)


def test_facts_survive_the_round_trip_through_json():
    facts = RoutingFacts(
        Decimal("12.30"),
        {"special_instructions": ("note",)},
        record(prior_orders=2, first_order_on=date(2025, 1, 2), last_late_payment_on=TODAY),
    )
    assert facts_from_json(json.loads(json.dumps(facts_to_json(facts)))) == facts


def test_dry_run_compare_counts_moves_roles_and_hours():
    facts = [
        ("SO-1", RoutingFacts(Decimal("30000.00"), customer=record(prior_orders=0))),
        (
            "SO-2",
            RoutingFacts(
                Decimal("30000.00"),
                customer=record(prior_orders=9, first_order_on=date(2020, 1, 1)),
            ),
        ),
        (
            "SO-3",
            RoutingFacts(
                Decimal("150000.00"),
                customer=record(prior_orders=9, first_order_on=date(2020, 1, 1)),
            ),
        ),
    ]
    result = compare(
        facts,
        DEFAULT_RULES,
        [*CUSTOMER_RULES, DEFAULT_RULES[-2]],
        {"sales_manager": Decimal("2.5")},
        days=7,
    )
    assert (result.orders, result.changed, result.first_pass_before, result.first_pass_after) == (
        3,
        2,
        2,
        2,
    )
    moves = {(m.from_route, m.to_route): m.order_ids for m in result.moves}
    assert moves == {
        ("first-pass", "sales_manager"): ["SO-1"],
        ("sales_manager", "first-pass"): ["SO-3"],
    }
    assert result.levels_delta == 0 and result.roles == [] and result.hours_delta == 0
    stricter = compare(
        facts,
        DEFAULT_RULES,
        [*DEFAULT_RULES, scoped("1.00", role="ops")],
        {"ops": Decimal("2.5")},
        days=7,
    )
    assert stricter.changed == 3 and stricter.levels_delta == 3
    assert [(r.role, r.delta, r.hours_delta) for r in stricter.roles] == [
        ("ops", 3, Decimal("7.5"))
    ]
