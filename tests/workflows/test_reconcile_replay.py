"""Determinism guard for ReconcileWorkflow: its recorded histories (books that balance, and
books that do not, which raise an alert) replay against the current code.

Record: ORDERFLOW_RECORD_HISTORIES=1 pytest tests/workflows/test_reconcile_replay.py
(existing files are kept: they are what runs in flight were made by)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.reconcile import CheckRequest
from tests.utils import Stack
from workflows.alert import AlertWorkflow
from workflows.reconcile import ReconcileWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"
SCENARIOS = ("reconcile-ok", "reconcile-off")
RECORD = os.environ.get("ORDERFLOW_RECORD_HISTORIES") == "1"


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_recorded_reconcile_history_replays(scenario: str):
    path = HISTORIES / f"{scenario}.json"
    assert path.exists(), f"missing {path}: record with ORDERFLOW_RECORD_HISTORIES=1"
    history = WorkflowHistory.from_json(scenario, path.read_text())
    replayer = Replayer(
        workflows=[ReconcileWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


@pytest.mark.skipif(not RECORD, reason="records histories only when asked")
async def test_record_reconcile_histories(stack: Stack):
    sku = await stack.product(stock=10)

    async def record(name: str, want_ok: bool) -> None:
        path = HISTORIES / f"{name}.json"
        handle = await stack.client.start_workflow(
            ReconcileWorkflow.run,
            CheckRequest(skus=[sku]),
            id=name,  # the replay test names the history by it
            task_queue=stack.settings.task_queue,
        )
        assert (await handle.result()).ok is want_ok
        if not path.exists():
            path.write_text((await handle.fetch_history()).to_json())

    await record("reconcile-ok", True)
    async with stack.sessions() as s:
        await s.execute(text("UPDATE stock SET on_hand = 9 WHERE sku = :sku"), {"sku": sku})
        await s.commit()
    try:
        await record("reconcile-off", False)
    finally:
        async with stack.sessions() as s:
            await s.execute(text("UPDATE stock SET on_hand = 10 WHERE sku = :sku"), {"sku": sku})
            await s.commit()
