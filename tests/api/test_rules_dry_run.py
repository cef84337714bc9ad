"""Rules that know the customer, on the real stack: a dry run of a rule change replays the
recent orders' stored facts, and after the change the same kind of orders are routed
exactly as the dry run said (issue 19)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from db.models import Invoice, Order, Receivable
from tests.utils import Stack

PAST_APPROVAL = (
    "approved",
    "reserved",
    "backordered",
    "picking",
    "packed",
    "shipped",
    "invoiced",
    "delivered",
    "completed",
)


@pytest.fixture
async def routing_restored(stack: Stack) -> AsyncIterator[Stack]:
    saved = (await stack.get("/routing-rules")).json()
    yield stack
    r = await stack.put("/routing-rules", {"rules": saved["rules"]})
    assert r.status_code == 200, r.text


async def history(stack: Stack, customer: str, orders: int, late_by_days: int | None) -> None:
    """Orders from 400 days ago (outside any dry-run window), and optionally an invoice of
    theirs paid `late_by_days` after its due date, 50 days ago."""
    old = datetime.now(UTC) - timedelta(days=400)
    async with stack.sessions() as s:
        ids = [f"SO-OLD-{uuid.uuid4().hex[:10]}" for _ in range(orders)]
        s.add_all(
            Order(
                id=oid,
                customer_code=customer,
                channel="api",
                status="completed",
                subtotal=Decimal("10.00"),
                total=Decimal("10.00"),
                currency="CNY",
                ship_to={},
                price_rules_version="history",
                created_by="test",
                created_at=old + timedelta(minutes=i),
            )
            for i, oid in enumerate(ids)
        )
        if late_by_days is not None:
            await s.flush()
            paid = date.today() - timedelta(days=50)
            number = f"INV-OLD-{uuid.uuid4().hex[:8]}"
            s.add(
                Invoice(
                    number=number,
                    order_id=ids[0],
                    customer_code=customer,
                    amount=Decimal("10.00"),
                    due_date=paid - timedelta(days=late_by_days),
                )
            )
            await s.flush()
            s.add(
                Receivable(
                    invoice_number=number,
                    customer_code=customer,
                    amount=Decimal("10.00"),
                    open_amount=Decimal("0.00"),
                    due_date=paid - timedelta(days=late_by_days),
                    paid_at=paid,
                )
            )
        await s.commit()


async def walk(stack: Stack, order_id: str) -> str:
    """The chain the order really waits through, approving each level as it comes."""
    order = await stack.wait_status(order_id, "awaiting_approval", *PAST_APPROVAL)
    roles: list[str] = []
    while order["status"] == "awaiting_approval":
        role = order["awaiting_role"]
        r = await stack.post(f"/orders/{order_id}/decision", {"decision": "approve"}, role=role)
        if r.status_code == 409:  # the level is not open yet
            order = (await stack.get(f"/orders/{order_id}")).json()
            continue
        assert r.status_code == 200, r.text
        roles.append(role)
        order = r.json()
    assert order["status"] in PAST_APPROVAL, order
    return " > ".join(roles) or "first-pass"


async def test_dry_run_numbers_match_what_routing_then_does(routing_restored: Stack):
    stack = routing_restored
    channel = f"dr-{uuid.uuid4().hex[:8]}"
    new = await stack.customer()  # no order yet: new
    veteran = await stack.customer(tier="gold")  # 12 orders long ago, always paid on time
    late = await stack.customer()  # 12 orders long ago, one invoice paid 10 days late
    await history(stack, veteran, 12, late_by_days=None)
    await history(stack, late, 12, late_by_days=10)
    sku = await stack.product(price="10.00", floor="1.00", stock=100_000)
    kinds = [  # (customer, quantity): totals 600 .. 2,500 (gold: 5 % less)
        (new, 150),
        (new, 60),
        (new, 250),
        (veteran, 150),
        (veteran, 250),
        (late, 60),
        (late, 250),
    ]
    saved = (await stack.get("/routing-rules")).json()["rules"]

    def rule(threshold: str, role: str, **scope: object) -> dict[str, object]:
        return {
            "condition": "total_above",
            "role": role,
            "position": {"credit_controller": 10, "sales_manager": 20}.get(role, 30),
            "threshold": threshold,
            "scope": {"channels": [channel], **scope},
        }

    # Today: this channel's orders above 2,000 go to a director, whoever the customer is.
    current = [*saved, rule("2000.00", "director")]
    # Proposed: not for gold customers; a new customer (first 10 orders) above 1,000 needs a
    # sales manager; a customer who paid late in the last 6 months, credit control above 500.
    proposed = [
        *saved,
        rule("2000.00", "director", tiers=["standard", "silver"]),
        rule("1000.00", "sales_manager", customer_age={"status": "new", "first_orders": 10}),
        rule("500.00", "credit_controller", payment_record={"status": "late", "months": 6}),
    ]
    assert (await stack.put("/routing-rules", {"rules": current})).status_code == 200

    async def place() -> list[str]:
        ids = []
        for customer, qty in kinds:
            r = await stack.order(customer, [(sku, qty)], channel=channel)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        return ids

    before_ids = await place()
    before = [await walk(stack, oid) for oid in before_ids]
    assert before == [
        "first-pass",
        "first-pass",
        "director",
        "first-pass",
        "director",
        "first-pass",
        "director",
    ]

    r = await stack.post("/routing-rules/dry-run", {"rules": proposed, "days": 1})
    assert r.status_code == 200, r.text
    dry = r.json()
    same = await stack.put("/routing-rules", {"rules": proposed, "dry_run": True, "days": 1})
    assert same.status_code == 200 and same.json() == dry
    table = (await stack.get("/routing-rules")).json()["rules"]
    assert len(table) == len(current), "a dry run saves nothing"
    assert not any((x["scope"] or {}).get("customer_age") for x in table)

    # The dry run names exactly this test's orders that change, and only them.
    moved = {oid: (m["from_route"], m["to_route"]) for m in dry["moves"] for oid in m["order_ids"]}
    assert set(moved) <= set(before_ids)
    assert moved == {
        before_ids[0]: ("first-pass", "sales_manager"),
        before_ids[2]: ("director", "sales_manager > director"),
        before_ids[4]: ("director", "first-pass"),
        before_ids[5]: ("first-pass", "credit_controller"),
        before_ids[6]: ("director", "credit_controller > director"),
    }
    assert dry["changed"] == 5
    assert dry["levels_delta"] == 3
    assert {x["role"]: x["delta"] for x in dry["roles"]} == {
        "credit_controller": 2,
        "director": -1,
        "sales_manager": 2,
    }

    # Apply it, place the same kind of orders again: routing does what the dry run said.
    assert (await stack.put("/routing-rules", {"rules": proposed})).status_code == 200
    after_ids = await place()
    after = [await walk(stack, oid) for oid in after_ids]
    realized = Counter((a, b) for a, b in zip(before, after, strict=True) if a != b)
    predicted = Counter({(m["from_route"], m["to_route"]): m["orders"] for m in dry["moves"]})
    assert realized == predicted
    assert sum(realized.values()) == dry["changed"]
    levels = sum(len(x.split(" > ")) for x in after if x != "first-pass")
    levels -= sum(len(x.split(" > ")) for x in before if x != "first-pass")
    assert levels == dry["levels_delta"]

    # What routing judged is kept on the order; the approver sees the scope that applied.
    async with stack.sessions() as s:
        facts = await s.scalar(select(Order.routing_facts).where(Order.id == after_ids[6]))
    assert facts["customer"]["prior_orders"] == 12 + 2 + 1  # history, set one, its 1st
    assert facts["customer"]["last_late_payment_on"] == str(date.today() - timedelta(days=50))
    first = (await stack.get(f"/orders/{after_ids[6]}")).json()["approvals"][0]
    assert first["reason"] == (
        f"total 2,500.00 above 500.00 (channel {channel}, late payer (6 months))"
    )


async def test_dry_run_refuses_bad_input_naming_the_field(stack: Stack):
    bad_scope = {
        "condition": "total_above",
        "role": "director",
        "threshold": "1.00",
        "scope": {"payment_record": {"status": "late", "months": 0}},
    }
    r = await stack.post("/routing-rules/dry-run", {"rules": [bad_scope], "days": 7})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "months"
    r = await stack.post("/routing-rules/dry-run", {"rules": [], "days": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "days"]
    r = await stack.put("/routing-rules", {"rules": [bad_scope]})
    assert r.status_code == 422 and "months" in r.json()["detail"][0]["loc"]
    r = await stack.post("/routing-rules/dry-run", {"rules": [], "days": 7}, role="sales_manager")
    assert r.status_code == 403
