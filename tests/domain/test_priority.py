"""Priority rules: which orders are urgent, who wins, which orders follow a rule change."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.priority import PriorityFacts, PriorityRule, by_rules, decide, follows_rules

TODAY = date(2026, 3, 2)


def facts(tier="standard", days: int | None = None, classes=()) -> PriorityFacts:
    when = None if days is None else TODAY + timedelta(days=days)
    return PriorityFacts(tier, when, TODAY, frozenset(classes))


RULES = [
    PriorityRule(condition="customer_tier", value="gold"),
    PriorityRule(condition="requested_within_days", days=2),
    PriorityRule(condition="product_class", value="home-office"),
]


def test_no_rules_means_normal():
    d = by_rules([], facts("gold", 0, ["home-office"]))
    assert (d.priority, d.source, d.reasons) == ("normal", "rule", ())


def test_each_condition_makes_an_order_urgent():
    assert by_rules(RULES, facts("gold")).reasons == ("customer tier gold",)
    assert by_rules(RULES, facts(days=2)).reasons == ("requested for 2026-03-04, within 2 days",)
    assert by_rules(RULES, facts(days=3)).priority == "normal"
    assert by_rules(RULES, facts(classes=["home-office", "x"])).reasons == (
        "product class home-office",
    )
    assert by_rules(RULES, facts("silver", None, ["garden"])).priority == "normal"
    d = by_rules(RULES, facts("gold", 1, ["home-office"]))
    assert d.priority == "urgent" and len(d.reasons) == 3
    assert d.detail.startswith("priority urgent (rule: customer tier gold; requested")


def test_the_caller_wins_over_the_rules():
    assert decide("normal", RULES, facts("gold")).priority == "normal"
    assert decide("urgent", [], facts()).source == "caller"
    assert decide(None, RULES, facts("gold")).source == "rule"


def test_only_rule_set_orders_before_picking_follow_a_change():
    assert follows_rules("rule", "awaiting_approval")
    assert follows_rules("rule", "backordered")
    assert not follows_rules("rule", "picking")
    assert not follows_rules("rule", "completed")
    assert not follows_rules("ops", "received")
    assert not follows_rules("caller", "reserved")


@pytest.mark.parametrize(
    "rule, field",
    [
        ({"condition": "customer_tier", "value": "platinum"}, "customer_tier"),
        ({"condition": "customer_tier"}, "value"),
        ({"condition": "requested_within_days"}, "days"),
        ({"condition": "requested_within_days", "days": 2, "value": "x"}, "value"),
        ({"condition": "requested_within_days", "days": -1}, "days"),
        ({"condition": "product_class", "value": "a", "days": 1}, "days"),
        ({"condition": "moon_phase", "value": "full"}, "condition"),
    ],
)
def test_bad_rules_name_the_field(rule, field):
    with pytest.raises(ValidationError, match=field):
        PriorityRule.model_validate(rule)


@given(
    st.sampled_from(["standard", "silver", "gold"]),
    st.one_of(st.none(), st.integers(-5, 30)),
    st.sets(st.sampled_from(["home-office", "garden", "furniture"])),
)
def test_urgent_exactly_when_some_rule_holds(tier, days, classes):
    f = facts(tier, days, classes)
    d = by_rules(RULES, f)
    expected = tier == "gold" or (days is not None and days <= 2) or "home-office" in classes
    assert (d.priority == "urgent") == expected
    assert by_rules(RULES, f) == d
