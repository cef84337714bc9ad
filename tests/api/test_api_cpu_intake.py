"""Issue 18, the API's CPU per order: the statements intake and the reads send, the list's
pre-encoded JSON, and the per-process priority rules cache following every edit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.routes.orders import OrderPage, OrderSummary
from db.models import Order, Product
from tests.utils import Stack


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent through `engine` while the block runs."""
    sent: list[str] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_an_order_costs_eleven_statements_and_a_read_one(
    api_stack: Stack, engine: AsyncEngine
):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    first = await stack.order(customer, [(sku, 1)], role="channel", key=f"warm-{uuid.uuid4().hex}")
    assert first.status_code == 201, first.text  # the token and the rules are cached now
    with statements(engine) as sent:
        r = await stack.order(customer, [(sku, 2)], role="channel", key=f"cpu-{uuid.uuid4().hex}")
    assert r.status_code == 201, r.text
    # Idempotency/external ref (1), rule versions, customer, products, stock (4), order
    # number, order, event, facts (4), lines, key (2): no re-reads, no priority rule reads.
    assert len(sent) <= 11, "\n".join(sent)
    with statements(engine) as sent:
        page = await stack.get("/orders", params={"customer_code": customer})
        one = await stack.get(f"/orders/{r.json()['id']}")
    assert page.status_code == one.status_code == 200
    assert len(sent) == 2, "\n".join(sent)


async def test_the_list_answers_what_the_models_would(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    for quantity in (1, 2, 3):
        assert (await stack.order(customer, [(sku, quantity)])).status_code == 201
    page = await stack.get("/orders", params={"customer_code": customer, "limit": 2})
    assert page.status_code == 200
    assert page.headers["content-type"] == "application/json"
    async with stack.sessions() as s:
        rows = (
            await s.scalars(
                select(Order).where(Order.customer_code == customer).order_by(Order.id.desc())
            )
        ).all()
    expected = OrderPage(
        items=[OrderSummary.model_validate(o, from_attributes=True) for o in rows[:2]],
        next_cursor=rows[1].id,
    )
    assert page.json() == expected.model_dump(mode="json")


@pytest.fixture
async def rules(api_stack: Stack) -> AsyncIterator[Stack]:
    """The priority rules are global: emptied again after the test."""
    yield api_stack
    r = await api_stack.put("/priority-rules", {"rules": []})
    assert r.status_code == 200, r.text


async def test_intake_follows_every_priority_rule_edit(rules: Stack):
    stack = rules
    customer = await stack.customer()
    sku = await stack.product()
    cls = f"cls-{uuid.uuid4().hex[:6]}"
    async with stack.sessions() as s:  # the class on the product, as ops would set it
        product = await s.get(Product, sku)
        assert product is not None
        product.product_class = cls
        await s.commit()
    assert (await stack.order(customer, [(sku, 1)])).json()["priority"] == "normal"
    rule = {"rules": [{"condition": "product_class", "value": cls}]}
    assert (await stack.put("/priority-rules", rule, role="ops")).status_code == 200
    assert (await stack.order(customer, [(sku, 1)])).json()["priority"] == "urgent"
    assert (await stack.put("/priority-rules", {"rules": []}, role="ops")).status_code == 200
    assert (await stack.order(customer, [(sku, 1)])).json()["priority"] == "normal"
