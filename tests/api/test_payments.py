"""Payments against invoices on the real stack: the receivable goes down, never below zero,
once per reference; a payment after the due date makes the customer a late payer, and a
`payment_record: late` scoped routing rule then routes its next order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from db.models import Invoice, Payment, Receivable
from tests.utils import Stack

PAST_APPROVAL = ("approved", "reserved", "picking", "packed", "shipped", "invoiced", "completed")


@pytest.fixture
async def routing_restored(stack: Stack) -> AsyncIterator[Stack]:
    saved = (await stack.get("/routing-rules")).json()
    yield stack
    r = await stack.put("/routing-rules", {"rules": saved["rules"]})
    assert r.status_code == 200, r.text


async def _invoiced(stack: Stack, customer: str, sku: str, units: int) -> tuple[str, str]:
    r = await stack.order(customer, [(sku, units)])
    assert r.status_code == 201, r.text
    order = await stack.wait_status(r.json()["id"], "completed")
    return order["id"], order["invoice"]["number"]


async def _pay(stack: Stack, number: str, amount: str, ref: str, **extra: Any) -> Any:
    body = {"amount": amount, "reference": ref, **extra}
    return await stack.post(f"/invoices/{number}/payments", body, role="credit_controller")


async def _backdate(stack: Stack, number: str, days: int) -> date:
    """The invoice was issued 30 + `days` days ago and fell due `days` days ago."""
    due = datetime.now(UTC).date() - timedelta(days=days)
    async with stack.sessions() as s, s.begin():
        await s.execute(
            update(Invoice)
            .where(Invoice.number == number)
            .values(due_date=due, issued_at=datetime.now(UTC) - timedelta(days=30 + days))
        )
        await s.execute(
            update(Receivable).where(Receivable.invoice_number == number).values(due_date=due)
        )
    return due


async def test_payments_lower_the_open_amount_never_below_zero(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="1.00", stock=100)
    _, number = await _invoiced(stack, customer, sku, 10)  # 100.00
    inv = (await stack.get(f"/invoices/{number}", role="sales")).json()
    assert (inv["amount"], inv["open_amount"], inv["paid"], inv["paid_at"]) == (
        "100.00",
        "100.00",
        "0.00",
        None,
    )

    r = await _pay(stack, number, "30.00", "BANK-001")
    assert r.status_code == 201, r.text
    assert (r.json()["open_amount"], r.json()["paid"], r.json()["paid_at"]) == (
        "70.00",
        "30.00",
        None,
    )
    # The same reference again records nothing; with another amount it is a 409 naming it.
    again = await _pay(stack, number, "30.00", "BANK-001")
    assert again.status_code == 200 and again.json()["open_amount"] == "70.00", again.text
    assert await stack.count(Payment, Payment.invoice_number == number) == 1
    other = await _pay(stack, number, "31.00", "BANK-001")
    assert other.status_code == 409 and other.json()["detail"][0]["loc"] == ["body", "reference"]

    # Never below zero: more than is open is refused, naming the amount.
    over = await _pay(stack, number, "70.01", "BANK-002")
    assert over.status_code == 409, over.text
    problem = over.json()["detail"][0]
    assert problem["loc"] == ["body", "amount"] and problem["code"] == "overpayment"
    assert "70.01" in problem["message"] and "70.00" in problem["message"]
    # Bad input: a 422 naming the field; the wrong role: 403.
    zero = await _pay(stack, number, "0.00", "BANK-003")
    assert zero.status_code == 422 and zero.json()["detail"][0]["loc"] == ["body", "amount"]
    future = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    ahead = await _pay(stack, number, "1.00", "BANK-004", paid_on=future)
    assert ahead.status_code == 422 and ahead.json()["detail"][0]["loc"] == ["body", "paid_on"]
    sales = await stack.post(
        f"/invoices/{number}/payments", {"amount": "1.00", "reference": "X"}, role="sales"
    )
    assert sales.status_code == 403, sales.text
    assert (await stack.get("/invoices/INV-NOPE", role="sales")).status_code == 404

    # The rest, on time: paid in full today, before the due date.
    done = await stack.post(
        f"/invoices/{number}/payments",
        {"amount": "70.00", "reference": "BANK-005"},
        role="ops",
    )
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["open_amount"] == "0.00" and body["paid"] == "100.00"
    assert body["paid_at"] == datetime.now(UTC).date().isoformat() and body["late"] is False
    assert [p["reference"] for p in body["payments"]] == ["BANK-001", "BANK-005"]
    nothing = await _pay(stack, number, "0.01", "BANK-006")
    assert nothing.status_code == 409, nothing.text
    exposure = (await stack.get(f"/customers/{customer}", role="sales")).json()["exposure"]
    assert Decimal(exposure) == Decimal("0.00")


async def test_a_late_payment_routes_the_next_order_by_a_payment_record_rule(
    routing_restored: Stack,
):
    stack = routing_restored
    sku = await stack.product(price="10.00", floor="1.00", stock=1000)
    late, on_time = await stack.customer(), await stack.customer()
    _, late_invoice = await _invoiced(stack, late, sku, 10)
    _, good_invoice = await _invoiced(stack, on_time, sku, 10)
    due = await _backdate(stack, late_invoice, days=10)

    paid_on = (due + timedelta(days=3)).isoformat()  # three days after the due date
    r = await _pay(stack, late_invoice, "100.00", "LATE-1", paid_on=paid_on)
    assert r.status_code == 201, r.text
    assert r.json()["paid_at"] == paid_on and r.json()["late"] is True
    r = await _pay(stack, good_invoice, "100.00", "GOOD-1")
    assert r.status_code == 201 and r.json()["late"] is False, r.text

    table = (await stack.get("/routing-rules")).json()
    rule = {
        "condition": "total_above",
        "role": "credit_controller",
        "position": 10,
        "threshold": "50.00",
        "scope": {"payment_record": {"status": "late", "months": 12}},
    }
    r = await stack.put("/routing-rules", {"rules": [*table["rules"], rule]})
    assert r.status_code == 200, r.text

    routed = (await stack.order(late, [(sku, 10)])).json()["id"]
    order = await stack.wait_status(routed, "awaiting_approval")
    assert order["awaiting_role"] == "credit_controller"
    assert "late payer" in order["approvals"][0]["reason"], order["approvals"]
    passed = (await stack.order(on_time, [(sku, 10)])).json()["id"]
    order = await stack.wait_status(passed, *PAST_APPROVAL)
    assert order["approvals"] == [], order["approvals"]
    r = await stack.post(
        f"/orders/{routed}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 200, r.text


async def test_concurrent_payments_never_take_the_receivable_below_zero(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="1.00", stock=100)
    _, number = await _invoiced(stack, customer, sku, 10)  # 100.00
    answers = await asyncio.gather(*(_pay(stack, number, "30.00", f"RACE-{i}") for i in range(5)))
    # The receivable's row lock lets them in one at a time: three fit, two would overpay.
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 201, 201, 409, 409], [r.text for r in answers]
    inv = (await stack.get(f"/invoices/{number}")).json()
    assert (inv["paid"], inv["open_amount"]) == ("90.00", "10.00"), inv
    assert await stack.count(Payment, Payment.invoice_number == number) == 3
