"""Determinism guard for ReturnWorkflow: recorded histories of returns replay against the
current code (see tests/workflows/test_replay.py for the rules). Record missing ones with
ORDERFLOW_RECORD_HISTORIES=1 pytest tests/workflows/test_replay_returns.py."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.billing import credit_invoice
from db.models import Invoice
from orderflow.embedded import EmbeddedPostgres
from services.config import Settings
from tests import conftest
from tests.utils import Stack, until
from workflows.returns import ReturnWorkflow, return_workflow_id

HISTORIES = Path(__file__).parent.parent / "histories"
SCENARIOS = (
    "return-auto",
    "return-approval",
    "return-refused",
    "return-credit-failed",
    "return-cancelled",
    "return-reminded",
)
RECORD = os.environ.get("ORDERFLOW_RECORD_HISTORIES") == "1"


@pytest.fixture
def settings(pg: EmbeddedPostgres) -> Settings:
    # A reminder 2 s into an approval wait (recorded in return-reminded).
    return conftest.test_settings(
        pg, returns_auto_amount=Decimal("50.00"), approval_reminder_seconds=2.0
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_recorded_return_history_replays(scenario: str):
    path = HISTORIES / f"{scenario}.json"
    assert path.exists(), f"missing {path}: record with ORDERFLOW_RECORD_HISTORIES=1"
    history = WorkflowHistory.from_json(scenario, path.read_text())
    replayer = Replayer(workflows=[ReturnWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


@pytest.mark.skipif(not RECORD, reason="records histories only when asked")
async def test_record_return_histories(stack: Stack):
    async def shipped(units: int) -> tuple[str, str]:
        customer = await stack.customer()
        sku = await stack.product(price="10.00", floor="1.00", stock=100)
        order_id = (await stack.order(customer, [(sku, units)])).json()["id"]
        await stack.wait_status(order_id, "completed")
        return order_id, sku

    async def ask(order_id: str, sku: str, qty: int) -> str:
        body = {"lines": [{"sku": sku, "quantity": qty}], "reason": "damaged"}
        r = await stack.post(f"/orders/{order_id}/returns", body, role="sales")
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def status(rma_id: str, wanted: str) -> None:
        async def reached() -> bool:
            return (await stack.get(f"/returns/{rma_id}")).json()["status"] == wanted

        await until(reached, f"{rma_id} {wanted}")

    async def receive(rma_id: str, sku: str, qty: int, condition: str) -> str:
        body = {"lines": [{"sku": sku, "quantity": qty, "condition": condition}]}
        r = await stack.post(f"/returns/{rma_id}/receive", body, role="ops")
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    async def save(name: str, rma_id: str) -> None:
        handle = stack.client.get_workflow_handle(return_workflow_id(rma_id))
        await handle.result()
        path = HISTORIES / f"{name}.json"
        if not path.exists():
            path.write_text((await handle.fetch_history()).to_json())

    order_id, sku = await shipped(2)
    rma = await ask(order_id, sku, 2)
    await status(rma, "approved")
    assert await receive(rma, sku, 2, "restock") == "completed"
    await save("return-auto", rma)

    order_id, sku = await shipped(10)
    rma = await ask(order_id, sku, 10)
    await status(rma, "awaiting_approval")
    r = await stack.post(f"/returns/{rma}/decision", {"decision": "approve"}, role="sales_manager")
    assert r.status_code == 200, r.text
    assert await receive(rma, sku, 10, "quarantine") == "completed"
    await save("return-approval", rma)

    order_id, sku = await shipped(10)
    refused = await ask(order_id, sku, 10)
    await status(refused, "awaiting_approval")
    r = await stack.post(f"/returns/{refused}/decision", {"decision": "reject"}, role="admin")
    assert r.status_code == 200, r.text
    await save("return-refused", refused)

    order_id, sku = await shipped(2)
    rma = await ask(order_id, sku, 2)
    await status(rma, "approved")
    async with stack.sessions() as s, s.begin():
        inv = await s.scalar(select(Invoice).where(Invoice.order_id == order_id))
        assert inv is not None
        await credit_invoice(s, inv, "credited by hand")
    assert await receive(rma, sku, 2, "restock") == "cancelled"
    await save("return-credit-failed", rma)

    order_id, sku = await shipped(10)
    rma = await ask(order_id, sku, 10)
    await status(rma, "awaiting_approval")
    r = await stack.post(f"/returns/{rma}/cancel", {"reason": "keeps them"}, role="sales")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    await save("return-cancelled", rma)

    order_id, sku = await shipped(10)
    rma = await ask(order_id, sku, 10)
    await status(rma, "awaiting_approval")

    async def reminded() -> bool:
        order = (await stack.get(f"/orders/{order_id}")).json()
        return any("reminder sent" in e["detail"] for e in order["timeline"])

    await until(reminded, f"{rma} reminder")
    r = await stack.post(f"/returns/{rma}/decision", {"decision": "approve"}, role="sales_manager")
    assert r.status_code == 200, r.text
    assert await receive(rma, sku, 10, "restock") == "completed"
    await save("return-reminded", rma)
