"""The bounded input types: each rule refuses what breaks it, names the rule, and is stated in
the JSON schema."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from domain.types import (
    INT4_MAX,
    INT8_MAX,
    MONEY_MAX,
    Code40,
    Count,
    CountryCode,
    DbId,
    DbInt,
    LineQuantity,
    Money,
    Name100,
    Name200,
    Quantity,
    SaneDate,
    SignedMoney,
    Text2000,
)


def error(kind: Any, value: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(kind).validate_python(value)
    (err,) = info.value.errors()
    return err


@pytest.mark.parametrize(
    ("kind", "value", "code", "words"),
    [
        (Code40, "A\x00B", "control_character", "U+0000 at position 1"),
        (Code40, "tab\there", "control_character", "U+0009"),
        (Code40, "n\x85el", "control_character", "U+0085 at position 1"),
        (Code40, "x" * 41, "string_too_long", "at most 40 characters"),
        (Code40, "   ", "string_too_short", "at least 1 character"),
        (Name100, "n" * 101, "string_too_long", "at most 100 characters"),
        (Name200, "n" * 201, "string_too_long", "at most 200 characters"),
        (Text2000, "bell\x07", "control_character", "tab, newline and carriage return"),
        (Text2000, "lone \ud800 surrogate", "invalid_unicode", "U+D800"),
        (Text2000, "t" * 2001, "string_too_long", "at most 2000 characters"),
        (CountryCode, "C1", "string_pattern_mismatch", "pattern"),
        (DbInt, INT4_MAX + 1, "less_than_equal", "2147483647"),
        (Count, -1, "greater_than_equal", "0"),
        (Count, 3_000_000_000, "less_than_equal", "2147483647"),
        (Quantity, 0, "greater_than", "0"),
        (Quantity, 2**31, "less_than_equal", "2147483647"),
        (LineQuantity, 2**31, "less_than_equal", "2147483647"),
        (DbId, 0, "greater_than_equal", "1"),
        (DbId, 10**30, "less_than_equal", str(INT8_MAX)),
        (Money, "-0.01", "greater_than_equal", "0"),
        (Money, "1000000000000", "decimal_whole_digits", "12 digits before the decimal point"),
        (Money, "1.005", "decimal_max_places", "2 decimal places"),
        (Money, "NaN", "finite_number", "finite"),
        (SignedMoney, "-1000000000000", "decimal_whole_digits", "12 digits"),
        (SaneDate, "1999-12-31", "greater_than_equal", "2000-01-01"),
        (SaneDate, "9999-12-31", "less_than_equal", "2100-12-31"),
    ],
)
def test_each_rule_refuses_and_names_itself(kind, value, code, words):
    err = error(kind, value)
    assert err["type"] == code, err
    assert words in err["msg"], err["msg"]


def test_lone_surrogate_in_a_stripped_line_is_refused():
    # Stripping makes pydantic read the text first: it refuses it as not valid Unicode.
    assert error(Code40, "A\udfffB")["type"] in {"string_unicode", "invalid_unicode"}


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (Code40, "  C-001 ", "C-001"),
        (Code40, "x" * 40, "x" * 40),
        (Name200, "Ünïcødé 顧客 ✓", "Ünïcødé 顧客 ✓"),
        (Text2000, "line one\r\n\tline two\n", "line one\r\n\tline two\n"),
        (CountryCode, "cn", "cn"),
        (Quantity, INT4_MAX, INT4_MAX),
        (LineQuantity, 0, 0),  # passes the type; validate_order reports it with the line
        (LineQuantity, -3, -3),
        (Count, 0, 0),
        (DbId, INT8_MAX, INT8_MAX),
        (Money, "999999999999.99", MONEY_MAX),
        (Money, 0, Decimal(0)),
        (SaneDate, "2100-12-31", date(2100, 12, 31)),
    ],
)
def test_the_edges_pass(kind, value, expected):
    assert TypeAdapter(kind).validate_python(value) == expected


class Sample(BaseModel):
    code: Code40
    text: Text2000
    quantity: Quantity
    line_quantity: LineQuantity
    on_hand: Count
    id: DbId
    price: Money


def test_the_json_schema_states_the_limits():
    props = Sample.model_json_schema()["properties"]
    assert props["code"]["maxLength"] == 40 and props["code"]["minLength"] == 1
    assert "pattern" in props["code"] and "pattern" in props["text"]
    assert props["text"]["maxLength"] == 2000
    assert props["quantity"] == {
        "exclusiveMinimum": 0,
        "maximum": INT4_MAX,
        "title": "Quantity",
        "type": "integer",
    }
    assert props["line_quantity"]["minimum"] == 1
    assert props["line_quantity"]["maximum"] == INT4_MAX
    assert props["on_hand"]["minimum"] == 0 and props["on_hand"]["maximum"] == INT4_MAX
    assert props["id"]["minimum"] == 1 and props["id"]["maximum"] == INT8_MAX
    number = next(s for s in props["price"]["anyOf"] if s["type"] == "number")
    assert number["minimum"] == 0 and number["maximum"] == float(MONEY_MAX)


LINE_PATTERN = re.compile(Sample.model_json_schema()["properties"]["code"]["pattern"])
TEXT_PATTERN = re.compile(Sample.model_json_schema()["properties"]["text"]["pattern"])


@given(st.text(max_size=30))
def test_the_schema_pattern_and_the_validator_agree(value):
    """A client that follows the pattern is never refused for a character, and the other way
    round: the pattern is the rule, not an approximation of it."""
    for pattern, kind in ((LINE_PATTERN, Code40), (TEXT_PATTERN, Text2000)):
        by_pattern = pattern.fullmatch(value) is not None
        try:
            TypeAdapter(kind).validate_python(value)
            by_validator = True
        except ValidationError as err:
            codes = {e["type"] for e in err.errors()}
            if codes <= {"string_too_short"}:
                continue  # blank: a length rule, not a character rule
            by_validator = False
        assert by_pattern == by_validator, (value, pattern.pattern)
