"""What the order tells the Temporal UI: summaries of its steps and timers, and lists."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.fulfilment import ReserveResult

# Temporal caps a summary at 400 bytes (UTF-8, as JSON): a longer one would fail the task.
SUMMARY_BYTES = 300
# Current details list this many SKUs or tracking numbers, then "and N more".
DETAIL_ITEMS = 10


def one_line(text: str, limit: int = SUMMARY_BYTES) -> str:
    """A summary for the Temporal UI: one line, cut to fit Temporal's limit."""
    flat = " ".join(text.split())
    if len(flat.encode()) <= limit:
        return flat
    return flat.encode()[: limit - 3].decode(errors="ignore") + "…"


def listed(items: list[str]) -> str:
    """The first DETAIL_ITEMS items, then 'and N more'."""
    more = len(items) - DETAIL_ITEMS
    return ", ".join(items[:DETAIL_ITEMS]) + (f" and {more} more" if more > 0 else "")


def utc(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def waiting_for(result: ReserveResult) -> str:
    """'SKU-A x3, SKU-B (production order #7)': what a backorder waits for."""
    return ", ".join(
        [f"{k} x{v}" for k, v in result.short.items()]
        + [f"{k} (production order #{v})" for k, v in result.in_production.items()]
    )


def plural(n: int, noun: str) -> str:
    """'1 line', '3 lines'."""
    return f"{n} {noun}{'s' if n != 1 else ''}"
