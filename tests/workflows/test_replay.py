"""Determinism guard: recorded histories of representative orders replay against the
current workflow code. A change that would break orders in flight fails here; guard it
with `workflow.patched()` instead of editing these files.

Record (a new scenario, or a new generation after a patched change):
ORDERFLOW_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py. Existing files are kept:
they are the histories of older workflow code that must keep replaying. Each generation of
the workflow (a `workflow.patched()` change that alters the commands of the plain path) has
its own set: `happy_path.json` from the first code, `happy_path-combined.json` from the
code with combined steps.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.utils import Stack
from workflows.alert import AlertWorkflow
from workflows.order import OrderWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"
SCENARIOS = (
    "happy_path",
    "approval",
    "backorder",
    "cancellation",
    "amendment",
    "partial_shipment",
)
# "" = steps one by one; "-combined" = combined steps (patch "combined-steps"); "-v2" =
# the same with one patch marker ("combined-steps-v2"); "-v3" = the same known from the
# input (`OrderWorkflowInput.pipeline` 3, no marker), current.
GENERATIONS = ("", "-combined", "-v2", "-v3")
RECORD = os.environ.get("ORDERFLOW_RECORD_HISTORIES") == "1"
# Manual warehouse mode (recorded by tests/api/test_warehouse.py): a full pick, confirm and
# pack run, and a short pick shipping partially (before and after its stock_discrepancy
# alert, patch "floor-short-pick-alert"); a short pick without partial shipment
# (written off, backordered, picked again) and a confirmation kept from before the wait.
MANUAL = (
    "manual-warehouse",
    "manual-short-pick",
    "manual-short-pick-alert",
    "manual-short-pick-again",
    "manual-early-confirm",
)


@pytest.mark.parametrize("scenario", [s + g for g in GENERATIONS for s in SCENARIOS] + list(MANUAL))
async def test_recorded_history_replays(scenario: str):
    path = HISTORIES / f"{scenario}.json"
    assert path.exists(), f"missing {path}: record with ORDERFLOW_RECORD_HISTORIES=1"
    history = WorkflowHistory.from_json(f"order-{scenario}", path.read_text())
    replayer = Replayer(
        workflows=[OrderWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


@pytest.mark.skipif(not RECORD, reason="records histories only when asked")
async def test_record_histories(stack: Stack):
    async def save(name: str, order_id: str) -> None:
        path = HISTORIES / f"{name}{GENERATIONS[-1]}.json"
        if path.exists():
            return
        history = await stack.client.get_workflow_handle(f"order-{order_id}").fetch_history()
        path.write_text(history.to_json())

    customer = await stack.customer()
    sku = await stack.product(stock=10)
    happy = (await stack.order(customer, [(sku, 2)])).json()["id"]
    await stack.wait_status(happy, "completed")
    await save("happy_path", happy)

    tight = await stack.customer(limit="1.00")
    approval = (await stack.order(tight, [(sku, 1)])).json()["id"]
    await stack.wait_status(approval, "awaiting_approval")
    await stack.post(
        f"/orders/{approval}/decision", {"decision": "approve"}, role="credit_controller"
    )
    await stack.wait_status(approval, "completed")
    await save("approval", approval)

    short = (await stack.order(customer, [(sku, 12)])).json()["id"]
    await stack.wait_status(short, "backordered")
    await stack.put(f"/inventory/{sku}", {"on_hand": 40})
    await stack.wait_status(short, "completed")
    await save("backorder", short)

    cancelled = (await stack.order(tight, [(sku, 1)])).json()["id"]
    await stack.wait_status(cancelled, "awaiting_approval")
    await stack.post(f"/orders/{cancelled}/cancel", {"reason": "replay sample"}, role="sales")
    await stack.wait_status(cancelled, "cancelled")
    await save("cancellation", cancelled)

    amended = (await stack.order(tight, [(sku, 1)])).json()["id"]
    await stack.wait_status(amended, "awaiting_approval")
    r = await stack.http.patch(
        f"/orders/{amended}",
        json={"lines": [{"sku": sku, "quantity": 2}], "comment": "replay sample"},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    await stack.post(
        f"/orders/{amended}/decision", {"decision": "approve"}, role="credit_controller"
    )
    await stack.wait_status(amended, "completed")
    await save("amendment", amended)

    scarce = await stack.product(stock=1)
    partial = (await stack.order(customer, [(scarce, 3)], allow_partial_shipment=True)).json()["id"]
    for _ in range(300):
        order = (await stack.get(f"/orders/{partial}")).json()
        if order["invoices"] and order["status"] == "backordered":
            break
        await asyncio.sleep(0.1)
    await stack.put(f"/inventory/{scarce}", {"on_hand": 5})
    await stack.wait_status(partial, "completed")
    await save("partial_shipment", partial)
