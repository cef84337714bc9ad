"""Approval SLA timers on the time-skipping server: reminder, escalation, timeout."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from db.models import Alert
from tests.utils import Stack


async def _awaiting(stack: Stack) -> str:
    customer = await stack.customer(limit="1.00")
    sku = await stack.product(stock=10)
    order_id = (await stack.order(customer, [(sku, 2)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    return order_id


def _details(order: dict) -> list[str]:
    return [e["detail"] for e in order["timeline"]]


async def test_reminder_escalation_and_timeout_reject(
    ts_stack: Stack, time_env: WorkflowEnvironment
):
    stack = ts_stack
    order_id = await _awaiting(stack)
    await time_env.sleep(timedelta(hours=4, minutes=1))
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert any(d.startswith("reminder:") for d in _details(order)), _details(order)
    assert order["awaiting_role"] == "credit_controller"

    await time_env.sleep(timedelta(hours=20))
    order = await stack.wait_status(order_id, "awaiting_approval")
    assert order["awaiting_role"] == "director"
    assert any("escalated to director" in d for d in _details(order))
    assert (
        await stack.count(Alert, Alert.order_id == order_id, Alert.kind == "approval_escalated")
        == 1
    )

    await time_env.sleep(timedelta(hours=48))
    order = await stack.wait_status(order_id, "rejected")
    assert "timed out" in order["failure_reason"]
    assert order["approvals"][-1]["status"] == "timed_out"
    assert (
        await stack.count(Alert, Alert.order_id == order_id, Alert.kind == "approval_timeout") == 1
    )
    assert (await stack.get(f"/inventory/{order['lines'][0]['sku']}")).json()["reserved"] == 0


async def test_decision_after_escalation_comes_from_the_backup_role(
    ts_stack: Stack, time_env: WorkflowEnvironment
):
    stack = ts_stack
    order_id = await _awaiting(stack)
    await time_env.sleep(timedelta(hours=25))
    order = await stack.wait_status(order_id, "awaiting_approval")
    assert order["awaiting_role"] == "director"
    r = await stack.post(
        f"/orders/{order_id}/decision", {"decision": "approve"}, role="credit_controller"
    )
    assert r.status_code == 403
    r = await stack.post(f"/orders/{order_id}/decision", {"decision": "approve"}, role="director")
    assert r.status_code == 200, r.text
    await time_env.sleep(timedelta(minutes=15))  # past the first delivery poll
    await stack.wait_status(order_id, "completed")
