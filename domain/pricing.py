"""The pricing engine. Precedence, in this one place:

1. A customer-specific price overrides everything (no breaks, no promotions).
2. Otherwise the base is the tier price list entry for the SKU, or the list price less the
   tier's default discount when the tier has no entry.
3. The best quantity break whose minimum the line reaches comes off the base (percent).
4. The single best active product promotion comes off that (promotions never stack with
   each other; a promotion does stack on a quantity break).
5. A requested unit price replaces the computed one, flagged with its deviation.
6. Whole-order promotions (the best single one) reduce the order total as `order_discount`.

Unit prices are rounded to cents half-up; a line total is unit price x quantity, exact.
Any unit price below the product's floor, and a requested price whose discount off list is
beyond the tier's maximum, are flagged so that routing sends the order to a sales manager.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from domain.facts import CustomerFacts, ProductFacts
from domain.money import q2
from domain.orders import PricedLine

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class QuantityBreak:
    sku: str
    min_qty: int
    percent_off: Decimal


@dataclass(frozen=True)
class Promotion:
    code: str
    kind: str  # "percent" or "amount"
    value: Decimal
    starts: date
    ends: date
    sku: str | None = None  # None: the whole order

    def active(self, on: date) -> bool:
        return self.starts <= on <= self.ends


@dataclass(frozen=True)
class PriceRules:
    version: str = "builtin"
    tier_prices: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    tier_discount_pct: dict[str, Decimal] = field(
        default_factory=lambda: {"standard": Decimal(0), "silver": Decimal(3), "gold": Decimal(5)}
    )
    max_discount_pct: dict[str, Decimal] = field(
        default_factory=lambda: {
            "standard": Decimal(10),
            "silver": Decimal(15),
            "gold": Decimal(20),
        }
    )
    breaks: tuple[QuantityBreak, ...] = ()
    promotions: tuple[Promotion, ...] = ()


@dataclass(frozen=True)
class PricedOrder:
    lines: list[PricedLine]
    subtotal: Decimal
    order_discount: Decimal
    order_discount_rule: str | None
    total: Decimal

    @property
    def needs_price_approval(self) -> bool:
        return any(line.below_floor or line.discount_beyond_max for line in self.lines)


def _pct(value: Decimal) -> str:
    """10.00 -> '10', 2.5 -> '2.5': how a percentage reads in a price rule."""
    return format(value.normalize(), "f")


def _off(price: Decimal, percent: Decimal) -> Decimal:
    return price * (HUNDRED - percent) / HUNDRED


def _computed_price(
    sku: str, qty: int, product: ProductFacts, customer: CustomerFacts, rules: PriceRules, on: date
) -> tuple[Decimal, str]:
    if sku in customer.special_prices:
        return q2(customer.special_prices[sku]), "customer_price"
    tier = customer.tier
    if (tier, sku) in rules.tier_prices:
        price, rule = rules.tier_prices[(tier, sku)], f"price_list:{tier}"
    else:
        pct = rules.tier_discount_pct.get(tier, Decimal(0))
        price = _off(product.unit_price, pct)
        rule = f"list-{_pct(pct)}%:{tier}" if pct else "list"
    breaks = [b for b in rules.breaks if b.sku == sku and b.min_qty <= qty]
    if breaks:
        best = max(breaks, key=lambda b: b.percent_off)
        price = _off(price, best.percent_off)
        rule += f"+break>={best.min_qty}:-{_pct(best.percent_off)}%"
    promo_prices = [
        (_promo_price(price, p), p.code) for p in rules.promotions if p.sku == sku and p.active(on)
    ]
    if promo_prices:
        promo_price, code = min(promo_prices)
        price = promo_price
        rule += f"+promo:{code}"
    return q2(max(price, Decimal(0))), rule


def _promo_price(price: Decimal, promo: Promotion) -> Decimal:
    if promo.kind == "percent":
        return _off(price, promo.value)
    return max(price - promo.value, Decimal(0))


def price_line(
    line_no: int,
    sku: str,
    qty: int,
    requested: Decimal | None,
    product: ProductFacts,
    customer: CustomerFacts,
    rules: PriceRules,
    on: date,
) -> PricedLine:
    """Price one line and say which rule produced the price."""
    computed, rule = _computed_price(sku, qty, product, customer, rules, on)
    unit, deviation = computed, None
    if requested is not None:
        unit = q2(requested)
        deviation = unit - computed
        rule = f"override(computed {computed} by {rule})"
    max_pct = rules.max_discount_pct.get(customer.tier, Decimal(0))
    return PricedLine(
        line_no=line_no,
        sku=sku,
        quantity=qty,
        list_price=q2(product.unit_price),
        unit_price=unit,
        line_total=unit * qty,
        price_rule=rule,
        override_deviation=deviation,
        below_floor=unit < product.floor_price,
        # Managed prices (lists, breaks, promotions) are sanctioned; only a channel's own
        # price is held to the tier's maximum discount. The floor binds every price.
        discount_beyond_max=requested is not None and unit < q2(_off(product.unit_price, max_pct)),
    )


def price_order(
    lines: list[tuple[str, int, Decimal | None]],
    products: dict[str, ProductFacts],
    customer: CustomerFacts,
    rules: PriceRules,
    on: date,
) -> PricedOrder:
    """Price validated lines (sku, quantity, requested price) and apply order promotions."""
    priced = [
        price_line(i + 1, sku, qty, req, products[sku], customer, rules, on)
        for i, (sku, qty, req) in enumerate(lines)
    ]
    subtotal = sum((p.line_total for p in priced), Decimal("0.00"))
    discount, discount_rule = Decimal("0.00"), None
    order_promos = [p for p in rules.promotions if p.sku is None and p.active(on)]
    if order_promos:
        best = max(order_promos, key=lambda p: subtotal - _promo_price(subtotal, p))
        discount = q2(subtotal - _promo_price(subtotal, best))
        discount_rule = f"promo:{best.code}"
    return PricedOrder(priced, subtotal, discount, discount_rule, subtotal - discount)
