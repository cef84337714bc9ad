"""The pricing engine: precedence table and properties."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.facts import CustomerFacts, ProductFacts
from domain.money import q2
from domain.pricing import PriceRules, Promotion, QuantityBreak, price_line, price_order

ON = date(2026, 11, 26)
P = ProductFacts("A", True, Decimal("100.00"), Decimal("80.00"), 1, 1)
STD = CustomerFacts("C", "standard", "active", Decimal(0), True)
GOLD = CustomerFacts("G", "gold", "active", Decimal(0), True)
RULES = PriceRules(
    tier_prices={("silver", "A"): Decimal("95.00")},
    breaks=(QuantityBreak("A", 10, Decimal(2)), QuantityBreak("A", 100, Decimal(5))),
    promotions=(
        Promotion("XMAS", "percent", Decimal(3), date(2026, 12, 1), date(2026, 12, 31), "A"),
        Promotion("NOV", "amount", Decimal("1.00"), date(2026, 11, 1), date(2026, 11, 30), "A"),
    ),
)


def test_half_up_rounding():
    assert q2(Decimal("0.005")) == Decimal("0.01")
    assert q2(Decimal("2.345")) == Decimal("2.35")
    assert q2(Decimal("-2.345")) == Decimal("-2.35")


def test_precedence_list_tier_break_promotion():
    line = price_line(1, "A", 1, None, P, STD, RULES, ON)
    assert (line.unit_price, line.price_rule) == (Decimal("99.00"), "list+promo:NOV")
    silver = CustomerFacts("S", "silver", "active", Decimal(0), True)
    line = price_line(1, "A", 10, None, P, silver, RULES, ON)
    # 95.00 tier list, -2 % break = 93.10, -1.00 promotion = 92.10
    assert line.unit_price == Decimal("92.10")
    assert line.price_rule == "price_list:silver+break>=10:-2%+promo:NOV"
    line = price_line(1, "A", 100, None, P, GOLD, RULES, date(2026, 12, 5))
    # 100 - 5 % gold = 95.00, -5 % break = 90.25, -3 % XMAS = 87.5425 -> 87.54
    assert line.unit_price == Decimal("87.54")


def test_customer_price_overrides_everything():
    special = CustomerFacts(
        "X", "gold", "active", Decimal(0), True, special_prices={"A": Decimal("81.00")}
    )
    line = price_line(1, "A", 500, None, P, special, RULES, ON)
    assert (line.unit_price, line.price_rule) == (Decimal("81.00"), "customer_price")


def test_requested_price_is_flagged_and_routed_when_below_floor():
    line = price_line(1, "A", 1, Decimal("79.99"), P, STD, PriceRules(), ON)
    assert line.unit_price == Decimal("79.99")
    assert line.override_deviation == Decimal("-20.01")
    assert line.below_floor and line.discount_beyond_max
    line = price_line(1, "A", 1, Decimal("95.00"), P, STD, PriceRules(), ON)
    assert not line.below_floor and not line.discount_beyond_max


def test_order_promotion_reduces_the_total():
    rules = PriceRules(
        promotions=(
            Promotion("BIG", "percent", Decimal(10), ON, ON),
            Promotion("SMALL", "amount", Decimal("5"), ON, ON),
        )
    )
    priced = price_order([("A", 3, None)], {"A": P}, STD, rules, ON)
    assert priced.subtotal == Decimal("300.00")
    assert (priced.order_discount, priced.order_discount_rule) == (Decimal("30.00"), "promo:BIG")
    assert priced.total == Decimal("270.00")


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=2)
qtys = st.integers(min_value=1, max_value=10_000)


@given(st.lists(st.tuples(prices, qtys), min_size=1, max_size=20))
def test_total_is_the_sum_of_its_lines(lines):
    products = {
        f"S{i}": ProductFacts(f"S{i}", True, p, p / 2, 1, 1) for i, (p, _) in enumerate(lines)
    }
    priced = price_order(
        [(f"S{i}", q, None) for i, (_, q) in enumerate(lines)], products, GOLD, RULES, ON
    )
    assert priced.total == sum(ln.line_total for ln in priced.lines)
    assert all(ln.line_total == ln.unit_price * ln.quantity for ln in priced.lines)


@given(qtys, qtys, st.sampled_from([STD, GOLD]))
def test_larger_quantity_never_raises_the_unit_price(a, b, customer):
    small, large = sorted((a, b))
    p_small = price_line(1, "A", small, None, P, customer, RULES, ON).unit_price
    p_large = price_line(1, "A", large, None, P, customer, RULES, ON).unit_price
    assert p_large <= p_small


@given(st.one_of(st.none(), prices), qtys)
def test_price_below_floor_is_always_flagged(requested, qty):
    line = price_line(1, "A", qty, requested, P, GOLD, RULES, ON)
    if line.unit_price < P.floor_price:
        assert line.below_floor
