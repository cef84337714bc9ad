"""Bad input is a 4xx naming the field and the rule, never a 500: the cases the fuzzer and the
review of issue 13 found, one test each."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.utils import Stack

BIG_ID = 10**29  # 30 digits: past BIGINT


def assert_422(r: httpx.Response, loc: list[Any], code: str | None = None) -> dict[str, Any]:
    """A 422 whose detail names `loc` (and `code`), with words and no driver text."""
    assert r.status_code == 422, r.text
    assert "psycopg" not in r.text and "sqlalchemy" not in r.text.lower()
    detail = r.json()["detail"]
    found = [d for d in detail if d["loc"] == loc and (code is None or d["code"] == code)]
    assert found, f"nothing at {loc} ({code}) in {detail}"
    assert found[0]["message"]
    return found[0]


def customer_body(**over: Any) -> dict[str, Any]:
    body = {
        "code": "C-BAD-INPUT",
        "name": "Bad Input Ltd",
        "credit_limit": "1000.00",
        "address": {
            "line1": "1 Test St",
            "city": "Shanghai",
            "postal_code": "200000",
            "country": "CN",
        },
    }
    return {**body, **over}


async def test_nul_in_a_name_is_refused(api_stack: Stack):
    r = await api_stack.post("/customers", customer_body(name="ACME\x00Ltd"))
    problem = assert_422(r, ["body", "name"], "control_character")
    assert "U+0000" in problem["message"]


async def test_a_lone_surrogate_is_refused(api_stack: Stack):
    # ensure_ascii keeps the lone surrogate as the JSON escape \ud800, as a client sends it.
    body = json.dumps(customer_body(name="ACME \ud800 Ltd"))
    r = await api_stack.http.post(
        "/customers",
        content=body,
        headers={**api_stack.auth(), "Content-Type": "application/json"},
    )
    assert_422(r, ["body", "name"], "invalid_unicode")


async def test_a_60_character_customer_code_is_refused(api_stack: Stack):
    r = await api_stack.post("/customers", customer_body(code="C" * 60))
    problem = assert_422(r, ["body", "code"], "string_too_long")
    assert "40" in problem["message"]


async def test_a_150_character_user_name_is_refused(api_stack: Stack):
    r = await api_stack.post("/users", {"name": "u" * 150, "role": "sales"})
    assert_422(r, ["body", "name"], "string_too_long")


async def test_a_41_character_channel_is_refused(api_stack: Stack):
    customer = await api_stack.customer()
    sku = await api_stack.product()
    r = await api_stack.order(customer, [(sku, 1)], channel="c" * 41)
    assert_422(r, ["body", "channel"], "string_too_long")


async def test_on_hand_past_the_integer_column_is_refused(api_stack: Stack):
    sku = await api_stack.product()
    r = await api_stack.put(f"/inventory/{sku}", {"on_hand": 3_000_000_000})
    problem = assert_422(r, ["body", "on_hand"], "less_than_equal")
    assert "2147483647" in problem["message"]


async def test_30_digit_path_ids_are_refused(api_stack: Stack):
    for path, name in [
        (f"/alerts/{BIG_ID}/ack", "alert_id"),
        (f"/production-orders/{BIG_ID}/complete", "production_id"),
        (f"/inventory/replenishments/{BIG_ID}/receive", "replenishment_id"),
    ]:
        r = await api_stack.post(path, {}, role="ops")
        assert_422(r, ["path", name], "less_than_equal")


async def test_far_future_kpi_dates_are_refused(api_stack: Stack):
    r = await api_stack.get("/kpis", params={"from": "9999-12-30", "to": "9999-12-31"})
    problem = assert_422(r, ["query", "to"], "less_than_equal")
    assert "2100-12-31" in problem["message"]
    assert_422(r, ["query", "from"])
    r = await api_stack.get("/kpis.xlsx", params={"to": "9999-12-31"})
    assert_422(r, ["query", "to"])


async def test_odd_query_strings_on_the_order_list_are_refused(api_stack: Stack):
    for name in ("customer_code", "channel", "cursor"):
        r = await api_stack.get("/orders", params={name: "A\x00B"})
        assert_422(r, ["query", name], "control_character")
    r = await api_stack.get("/orders", params={"customer_code": "x" * 41})
    assert_422(r, ["query", "customer_code"], "string_too_long")


async def test_nul_in_a_path_is_refused(api_stack: Stack):
    r = await api_stack.get("/customers/A%00B")
    assert_422(r, ["path", "code"], "control_character")
    r = await api_stack.get("/orders/A%00B")
    assert_422(r, ["path", "order_id"], "control_character")


async def test_a_negative_unit_price_is_refused(api_stack: Stack):
    customer = await api_stack.customer()
    sku = await api_stack.product()
    r = await api_stack.post(
        "/orders",
        {"customer_code": customer, "lines": [{"sku": sku, "quantity": 1, "unit_price": "-5.00"}]},
        role="sales",
    )
    assert_422(r, ["body", "lines", 0, "unit_price"], "greater_than_equal")


async def test_every_problem_of_one_line_is_reported_at_once(api_stack: Stack):
    customer = await api_stack.customer()
    r = await api_stack.order(customer, [("NO-SUCH-SKU", 0)])
    assert r.status_code == 422, r.text
    found = {(tuple(d["loc"]), d["code"]) for d in r.json()["detail"]}
    assert found == {
        (("lines", 0, "sku"), "unknown_sku"),
        (("lines", 0, "quantity"), "quantity_not_positive"),
    }


async def test_an_amount_past_the_money_column_is_refused(api_stack: Stack):
    customer = await api_stack.customer()
    sku = await api_stack.product(price="1000.00", floor="1.00")
    r = await api_stack.order(customer, [(sku, 2**31 - 1)])
    problem = assert_422(r, ["lines", 0, "quantity"], "amount_too_large")
    assert "999999999999.99" in problem["message"]


async def test_a_data_error_that_slips_through_is_a_422_without_driver_text(api_stack: Stack):
    # Each value is in range; their sum is not: PostgreSQL refuses it (integer out of range).
    sku = await api_stack.product(stock=0)
    r = await api_stack.put(f"/inventory/{sku}", {"on_hand": 2**31 - 1})
    assert r.status_code == 200, r.text
    r = await api_stack.post(
        f"/inventory/{sku}/replenishments",
        {"quantity": 10, "expected_date": "2030-01-01"},
        role="ops",
    )
    assert r.status_code == 201, r.text
    r = await api_stack.post(f"/inventory/replenishments/{r.json()['id']}/receive", {}, role="ops")
    problem = assert_422(r, ["body"], "invalid_data")
    assert "out of range" in problem["message"]
    r = await api_stack.get(f"/inventory/{sku}")
    assert r.json()["on_hand"] == 2**31 - 1  # nothing was written


async def test_an_amendment_with_quantity_2_pow_31_is_refused_before_any_activity(stack: Stack):
    customer = await stack.customer(limit="100.00")
    sku = await stack.product(price="10.00", stock=100)
    r = await stack.order(customer, [(sku, 20)])
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")

    started = time.monotonic()
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 2**31}]},
        headers=stack.auth("sales"),
    )
    assert_422(r, ["body", "lines", 0, "quantity"], "less_than_equal")
    assert time.monotonic() - started < 5

    # Nothing ran and nothing is held: a valid amendment goes through at once.
    r = await stack.get(f"/orders/{order_id}")
    assert not [e for e in r.json()["timeline"] if e["kind"] == "amendment"]
    r = await stack.http.patch(
        f"/orders/{order_id}",
        json={"lines": [{"sku": sku, "quantity": 5}]},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["quantity"] == 5
