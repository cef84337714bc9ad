"""Logging: readable on a terminal, JSON lines otherwise, with the order and workflow ids."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per line; order_id and workflow_id when the record knows them."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Temporal's loggers attach the activity's or workflow's info as a dict.
        temporal = (
            getattr(record, "temporal_activity", None)
            or getattr(record, "temporal_workflow", None)
            or {}
        )
        workflow_id = getattr(record, "workflow_id", None) or temporal.get("workflow_id")
        if workflow_id:
            doc["workflow_id"] = workflow_id
            if workflow_id.startswith("order-"):
                doc["order_id"] = workflow_id.removeprefix("order-")
        if order_id := getattr(record, "order_id", None):
            doc["order_id"] = order_id
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(stream: Any = None) -> None:
    """Configure the root logger once per process (ORDERFLOW_LOG_LEVEL, default INFO)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stream.isatty():
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("ORDERFLOW_LOG_LEVEL", "INFO").upper())
