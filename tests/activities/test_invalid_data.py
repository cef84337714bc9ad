"""A value PostgreSQL refuses fails an activity for good (InvalidData), without the driver's
text; other database errors are left to the retry policy."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from temporalio.exceptions import ApplicationError

from activities.base import DbActivities
from db.session import SessionFactory
from services.config import Settings


@pytest.mark.parametrize(
    ("sql", "params", "words"),
    [
        ("SELECT CAST(2147483647 AS integer) + 1", {}, "a number is out of range for its column"),
        ("SELECT CAST(:v AS text)", {"v": "a\x00b"}, "cannot store (NUL)"),
        ("INSERT INTO customers (code) VALUES (:v)", {"v": "x" * 41}, "longer than its column"),
        ("SELECT CAST('2200-13-45' AS date)", {}, "date or time"),
    ],
)
async def test_a_data_error_is_a_non_retryable_business_error(
    sessions: SessionFactory, settings: Settings, sql: str, params: dict, words: str
):
    acts = DbActivities(sessions, settings)
    with pytest.raises(ApplicationError) as info:
        async with acts.tx() as s:
            await s.execute(text(sql), params)
    err = info.value
    assert err.type == "InvalidData" and err.non_retryable
    assert words in err.message
    assert err.__cause__ is None and "psycopg" not in err.message


async def test_other_database_errors_are_left_to_the_retry_policy(
    sessions: SessionFactory, settings: Settings
):
    acts = DbActivities(sessions, settings)
    with pytest.raises(ProgrammingError):
        async with acts.tx() as s:
            await s.execute(text("SELECT * FROM no_such_table"))


async def test_a_status_move_the_table_forbids_fails_its_step_for_good(api_stack):
    """An order cannot jump from received to completed: the step fails at once (a retry
    would be refused the same way), and nothing is written."""
    from activities.orders import OrderActivities
    from db.models import Order, OrderEvent
    from domain.orders import StatusChange
    from domain.status import OrderStatus

    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]  # no worker: received
    acts = OrderActivities(stack.sessions, stack.settings)
    with pytest.raises(ApplicationError) as info:
        await acts.set_status(
            StatusChange(order_id=order_id, status=OrderStatus.COMPLETED, step_key="jump")
        )
    assert info.value.type == "IllegalTransition" and info.value.non_retryable
    async with stack.sessions() as s:
        assert (await s.get(Order, order_id)).status == "received"
    assert await stack.count(OrderEvent, OrderEvent.step_key == "jump") == 0
