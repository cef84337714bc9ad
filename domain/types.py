"""Bounded input types: every value that enters from outside fits its PostgreSQL column.

One set of constrained types for the API models, the sheet and webhook parsers and the
amendment Update, so a bad value is a 422 naming the field and the rule before anything
touches PostgreSQL. The limits mirror `orderflow/db/models.py`:

- text: at most the column's length (`String(n)` counts characters, so does `max_length`),
  no control characters (NUL, C0, DEL, C1; free text keeps tab, newline and carriage return)
  and nothing that cannot be encoded as UTF-8 (lone surrogates);
- integers: within the column's range (int4 or int8); quantities > 0 within int4;
- money: >= 0, at most 14 digits with 2 decimals (`NUMERIC(14,2)`);
- dates: within a fixed window, 2000-01-01 .. 2100-12-31 (fixed rather than "today +- N
  years", so a payload that passed once passes again when a workflow history is replayed).

The JSON schema of each type states the same limits (maxLength, pattern, minimum, maximum),
so the OpenAPI document tells a client, or a fuzzer, what will be accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import (
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
MONEY_DIGITS = 14
MONEY_PLACES = 2
MONEY_MAX = Decimal("999999999999.99")  # NUMERIC(14,2)
DATE_MIN = date(2000, 1, 1)
DATE_MAX = date(2100, 12, 31)

# What a string may not contain. The same classes, written once for Python and once as a
# JSON-schema pattern (ECMA 262 and Python's `re` both read \uXXXX).
_LINE_FORBIDDEN = r"\u0000-\u001f\u007f-\u009f\ud800-\udfff"
_TEXT_FORBIDDEN = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ud800-\udfff"
_ALLOWED_IN_TEXT = frozenset("\t\n\r")


def _bad_char(value: str, multiline: bool) -> tuple[int, str] | None:
    """The first forbidden character of `value` and its position, if any."""
    for i, ch in enumerate(value):
        cp = ord(ch)
        if (cp < 0x20 or 0x7F <= cp <= 0x9F) and not (multiline and ch in _ALLOWED_IN_TEXT):
            return i, ch
        if 0xD800 <= cp <= 0xDFFF:
            return i, ch
    return None


@dataclass(frozen=True)
class Printable:
    """Annotated marker: no control characters and valid UTF-8; `multiline` keeps tab/CR/LF."""

    multiline: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Before the string rules: the raw input is judged (a trailing "\r" is not stripped
        # away first), as the schema's pattern judges it, and a lone surrogate is named.
        return core_schema.no_info_before_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        js = handler(schema)
        forbidden = _TEXT_FORBIDDEN if self.multiline else _LINE_FORBIDDEN
        js["pattern"] = f"^[^{forbidden}]*$"
        return js

    def _check(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # not text: the string rules refuse it
        found = _bad_char(value, self.multiline)
        if found is None:
            return value
        pos, ch = found
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise PydanticCustomError(
                "invalid_unicode",
                "must be valid Unicode: lone surrogate {char} at position {pos}",
                {"char": f"U+{ord(ch):04X}", "pos": pos},
            )
        allowed = " (tab, newline and carriage return are allowed)" if self.multiline else ""
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters{allowed}: {char} at position {pos}",
            {"char": f"U+{ord(ch):04X}", "pos": pos, "allowed": allowed},
        )


def line(max_length: int, *, min_length: int = 1) -> Any:
    """One line of text for a `String(max_length)` column: stripped, no control characters."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
        Printable(),
    ]


def text(max_length: int, *, min_length: int = 0) -> Any:
    """Free text (several lines allowed, kept as given) of at most `max_length` characters."""
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        Printable(multiline=True),
    ]


# Text, by the column it lands in (see db/models.py). Spelled out (not `line(40)`) so a
# type checker sees them as types.
_LINE = Printable()
Code20 = Annotated[  # tier, status, postal code, bin location
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20), _LINE
]
Code40 = Annotated[  # customer code, SKU, order id, channel, promotion code, invoice number
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40), _LINE
]
Name100 = Annotated[  # user names, actors, city
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), _LINE
]
Name200 = Annotated[  # customer and product names, address line, external reference
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _LINE
]
TrackingNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60), _LINE
]
CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$"),
]
# Comments, reasons, special instructions: TEXT columns, bounded here.
Text2000 = Annotated[str, StringConstraints(max_length=2000), Printable(multiline=True)]

# Integers, by the column's range.
DbInt = Annotated[int, Interval(ge=INT4_MIN, le=INT4_MAX)]  # INTEGER
Count = Annotated[int, Interval(ge=0, le=INT4_MAX)]  # a non-negative INTEGER (stock levels)
Quantity = Annotated[int, Interval(gt=0, le=INT4_MAX)]  # units on a line, > 0
DbId = Annotated[int, Interval(ge=1, le=INT8_MAX)]  # a BIGSERIAL primary key
# The quantity of an order line: the schema says 1..int4, but zero and negatives within int4
# pass the type so that business validation (domain/validation.py) reports them together
# with the line's other problems (an unknown SKU, say) instead of one at a time.
LineQuantity = Annotated[
    int,
    Interval(ge=INT4_MIN, le=INT4_MAX),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": INT4_MAX}),
]


@dataclass(frozen=True)
class DecimalText:
    """Annotated marker: the JSON schema states the decimal places (multipleOf on the number
    form, a pattern on the string form), so a client knows 1.005 will be refused."""

    pattern: str
    step: float = 0.01

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        js = handler(schema)
        for variant in js.get("anyOf", []):
            if variant.get("type") == "string":
                variant["pattern"] = self.pattern
            elif variant.get("type") == "number":
                variant["multipleOf"] = self.step
        return js


# Money: NUMERIC(14,2). `Money` is what a caller may send (never negative); `SignedMoney`
# is for computed differences that can be below zero.
Money = Annotated[
    Decimal,
    Field(ge=0, le=MONEY_MAX, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES),
    DecimalText(r"^[0-9]{1,12}(\.[0-9]{1,2})?$"),
]
SignedMoney = Annotated[
    Decimal,
    Field(ge=-MONEY_MAX, le=MONEY_MAX, max_digits=MONEY_DIGITS, decimal_places=MONEY_PLACES),
    DecimalText(r"^-?[0-9]{1,12}(\.[0-9]{1,2})?$"),
]
Percent = Annotated[
    Decimal,
    Field(gt=0, lt=100, max_digits=5, decimal_places=2),
    DecimalText(r"^[0-9]{1,2}(\.[0-9]{1,2})?$"),
]

# Dates within the window PostgreSQL and the business both make sense of.
SaneDate = Annotated[date, Interval(ge=DATE_MIN, le=DATE_MAX)]

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "INT4_MAX",
    "INT4_MIN",
    "INT8_MAX",
    "LineQuantity",
    "MONEY_MAX",
    "Code20",
    "Code40",
    "Count",
    "CountryCode",
    "DbId",
    "DbInt",
    "DecimalText",
    "Money",
    "Name100",
    "Name200",
    "Percent",
    "Printable",
    "Quantity",
    "SaneDate",
    "SignedMoney",
    "Text2000",
    "TrackingNumber",
    "line",
    "text",
]
