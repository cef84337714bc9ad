"""Money is Decimal, rounded per line to 2 places, half-up."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def q2(value: Decimal | int | str) -> Decimal:
    """Round to cents, half-up (0.005 -> 0.01), the rule used for every line and total."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def fmt(value: Decimal) -> str:
    """Human form with thousands separators: 812000 -> '812,000.00'."""
    return f"{q2(value):,.2f}"
