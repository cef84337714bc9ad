"""Order priority on the real stack: caller, rules, ops by hand, rule changes, the inbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.utils import Stack

AFTER_PICKING = ("picking", "packed", "shipped", "invoiced", "delivered", "completed")


@pytest.fixture
async def rules(stack: Stack) -> AsyncIterator[Stack]:
    """A stack whose priority rules are emptied again after the test (they are global)."""
    yield stack
    r = await stack.put("/priority-rules", {"rules": []})
    assert r.status_code == 200, r.text


async def classed_product(stack: Stack, product_class: str) -> str:
    sku = f"P-{uuid.uuid4().hex[:8].upper()}"
    r = await stack.post(
        "/products",
        {
            "sku": sku,
            "name": f"Desk {sku}",
            "unit_price": "10.00",
            "floor_price": "8.00",
            "bin_location": "B-02-6-A",
            "product_class": product_class,
        },
    )
    assert r.status_code == 201, r.text
    assert (await stack.put(f"/inventory/{sku}", {"on_hand": 500})).status_code == 200
    return sku


async def test_caller_priority_wins_and_shows_everywhere(rules: Stack):
    stack = rules
    cls = f"cls-{uuid.uuid4().hex[:6]}"
    sku = await classed_product(stack, cls)
    customer = await stack.customer()
    r = await stack.put(
        "/priority-rules", {"rules": [{"condition": "product_class", "value": cls}]}, role="ops"
    )
    assert r.status_code == 200, r.text

    urgent = await stack.order(customer, [(sku, 1)], priority="urgent")
    assert urgent.status_code == 201, urgent.text
    assert urgent.json()["priority"] == "urgent"
    # The rule says urgent, the caller says normal: the caller wins.
    normal = await stack.order(customer, [(sku, 1)], priority="normal")
    assert normal.json()["priority"] == "normal"
    by_rule = await stack.order(customer, [(sku, 1)])
    assert by_rule.json()["priority"] == "urgent"

    got = {}
    for resp in (urgent, normal, by_rule):
        order = (await stack.get(f"/orders/{resp.json()['id']}")).json()
        got[resp.json()["id"]] = (order["priority"], order["priority_source"])
    assert list(got.values()) == [("urgent", "caller"), ("normal", "caller"), ("urgent", "rule")]
    rule_order = (await stack.get(f"/orders/{by_rule.json()['id']}")).json()
    assert any(
        e["detail"].startswith("priority urgent (rule: product class " + cls)
        for e in rule_order["timeline"]
    ), rule_order["timeline"]
    page = (await stack.get("/orders", params={"customer_code": customer})).json()["items"]
    assert {o["id"]: o["priority"] for o in page} == {k: v[0] for k, v in got.items()}

    bad = await stack.order(customer, [(sku, 1)], priority="asap")
    assert bad.status_code == 422
    assert "priority" in bad.text


async def test_rule_change_reapplies_to_open_orders_not_to_picked_or_hand_set(rules: Stack):
    stack = rules
    cls = f"cls-{uuid.uuid4().hex[:6]}"
    sku = await classed_product(stack, cls)
    # Waits for a credit controller: open, not yet picked.
    held = (await stack.order(await stack.customer(limit="1.00"), [(sku, 1)])).json()["id"]
    await stack.wait_status(held, "awaiting_approval")
    # Another one held, which ops set by hand before the rules change.
    by_hand = (await stack.order(await stack.customer(limit="1.00"), [(sku, 1)])).json()["id"]
    await stack.wait_status(by_hand, "awaiting_approval")
    r = await stack.put(
        f"/orders/{by_hand}/priority", {"priority": "normal", "reason": "can wait"}, role="ops"
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"id": by_hand, "priority": "normal", "priority_source": "ops"}
    # Past picking.
    picked = (await stack.order(await stack.customer(), [(sku, 1)])).json()["id"]
    await stack.wait_status(picked, *AFTER_PICKING[2:])

    r = await stack.put(
        "/priority-rules", {"rules": [{"condition": "product_class", "value": cls}]}, role="ops"
    )
    assert r.status_code == 200, r.text
    assert held in r.json()["changed"]
    assert picked not in r.json()["changed"] and by_hand not in r.json()["changed"]

    pri = {}
    for oid in (held, by_hand, picked):
        o = (await stack.get(f"/orders/{oid}")).json()
        pri[oid] = (o["priority"], o["priority_source"])
    assert pri == {
        held: ("urgent", "rule"),
        by_hand: ("normal", "ops"),
        picked: ("normal", "rule"),
    }
    timeline = (await stack.get(f"/orders/{held}")).json()["timeline"]
    version = r.json()["version"]
    assert any(f"priority rules v{version}" in e["detail"] for e in timeline), timeline
    hand = (await stack.get(f"/orders/{by_hand}")).json()["timeline"]
    assert any("can wait" in e["detail"] and "ops-" in e["detail"] for e in hand), hand

    # Rules back to none: the rule-set order follows again.
    r = await stack.put("/priority-rules", {"rules": []}, role="admin")
    assert held in r.json()["changed"]
    assert (await stack.get(f"/orders/{held}")).json()["priority"] == "normal"
    await stack.post(f"/orders/{held}/cancel", {"reason": "test done"}, role="ops")
    await stack.post(f"/orders/{by_hand}/cancel", {"reason": "test done"}, role="ops")


async def test_inbox_lists_urgent_first_then_oldest(rules: Stack):
    stack = rules
    sku = await stack.product()
    customer = await stack.customer(limit="1.00")
    first = (await stack.order(customer, [(sku, 1)])).json()["id"]
    second = (await stack.order(customer, [(sku, 1)])).json()["id"]
    third = (await stack.order(customer, [(sku, 1)], priority="urgent")).json()["id"]
    for oid in (first, second, third):
        await stack.wait_status(oid, "awaiting_approval")

    async def inbox() -> list[str]:
        items = (await stack.get("/approvals", role="credit_controller")).json()
        return [i["order_id"] for i in items if i["customer_code"] == customer]

    assert await inbox() == [third, first, second]
    r = await stack.put(
        f"/orders/{second}/priority", {"priority": "urgent", "reason": "VIP"}, role="ops"
    )
    assert r.status_code == 200, r.text
    assert await inbox() == [second, third, first]
    for oid in (first, second, third):
        await stack.post(f"/orders/{oid}/cancel", {"reason": "test done"}, role="ops")


async def test_priority_routes_refuse_bad_input_and_other_roles(rules: Stack):
    stack = rules
    r = await stack.put("/priority-rules", {"rules": []}, role="sales")
    assert r.status_code == 403
    r = await stack.put(
        "/priority-rules", {"rules": [{"condition": "customer_tier", "value": "platinum"}]}
    )
    assert r.status_code == 422 and "customer_tier" in r.text, r.text
    r = await stack.put("/priority-rules", {"rules": [{"condition": "requested_within_days"}]})
    assert r.status_code == 422 and "days" in r.text, r.text
    r = await stack.put(
        "/priority-rules", {"rules": [{"condition": "requested_within_days", "days": 3}]}
    )
    assert r.status_code == 200, r.text
    got = (await stack.get("/priority-rules", role="ops")).json()
    assert got["rules"] == [{"condition": "requested_within_days", "value": None, "days": 3}]
    assert got["version"] == r.json()["version"]

    r = await stack.put(
        "/orders/NOPE-1/priority", {"priority": "urgent", "reason": "x"}, role="ops"
    )
    assert r.status_code == 404
    r = await stack.put("/orders/NOPE-1/priority", {"priority": "soon", "reason": "x"}, role="ops")
    assert r.status_code == 422 and "priority" in r.text
    r = await stack.put("/orders/NOPE-1/priority", {"priority": "urgent"}, role="ops")
    assert r.status_code == 422 and "reason" in r.text
    customer = await stack.customer()
    done = (await stack.order(customer, [(await stack.product(), 1)])).json()["id"]
    await stack.wait_status(done, "completed")
    r = await stack.put(
        f"/orders/{done}/priority", {"priority": "urgent", "reason": "x"}, role="ops"
    )
    assert r.status_code == 409
    r = await stack.put(
        f"/orders/{done}/priority", {"priority": "urgent", "reason": "x"}, role="sales"
    )
    assert r.status_code == 403
