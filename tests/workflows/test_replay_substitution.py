"""Determinism guard for the `substitute` Update: a recorded order that backordered on a
disrupted SKU, was refused a dearer substitute, took a cheaper one and completed replays
against the current code (rules: tests/workflows/test_replay.py). Recorded by
tests/api/test_disruptions.py with ORDERFLOW_RECORD_HISTORIES=1."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.alert import AlertWorkflow
from workflows.order import OrderWorkflow

HISTORIES = Path(__file__).parent.parent / "histories"
# One per workflow generation (see tests/workflows/test_replay.py): "substitution.json" from
# the code with combined steps, "substitution-v2.json" from "combined-steps-v2".
NAMES = ("substitution", "substitution-v2")


@pytest.mark.parametrize("name", NAMES)
async def test_recorded_substitution_replays(name: str) -> None:
    path = HISTORIES / f"{name}.json"
    assert path.exists(), f"missing {path}: record with ORDERFLOW_RECORD_HISTORIES=1"
    text = path.read_text()
    # The history holds the refused and the accepted Updates (guards against recording
    # a run that never reached the new path).
    assert text.count('"substitute"') >= 2
    history = WorkflowHistory.from_json(f"order-{name}", text)
    replayer = Replayer(
        workflows=[OrderWorkflow, AlertWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
