"""Logs are JSON lines off a terminal and carry the order and workflow ids."""

from __future__ import annotations

import io
import json
import logging

from orderflow.logs import setup_logging


def test_json_lines_with_order_and_workflow_ids():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(stream)
        logging.getLogger("orderflow.test").info(
            "moved %s", "on", extra={"order_id": "SO-1", "workflow_id": "order-SO-1"}
        )
        logging.getLogger("temporalio.activity").info(
            "retrying", extra={"temporal_activity": {"workflow_id": "order-SO-2"}}
        )
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "moved on" and first["level"] == "info"
    assert (first["order_id"], first["workflow_id"]) == ("SO-1", "order-SO-1")
    assert (second["order_id"], second["workflow_id"]) == ("SO-2", "order-SO-2")
