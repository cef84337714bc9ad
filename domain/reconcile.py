"""Books against shelves: the reconciliation report and cycle counts (docs/reconcile.md).

The payloads the API, the CLI, the activity and the ReconcileWorkflow share, and the reading
of a count sheet (.xlsx / .csv, read by the same guarded readers as order sheets).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from domain.alerts import Alert
from domain.base import Model
from domain.sheets import SheetError, SheetLimits, _read_csv, _read_xlsx
from domain.types import Code20, Code40, Count, Printable

# A count id or Idempotency-Key: what makes sending the same count twice harmless.
CountId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Printable()
]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), Printable()
]
MAX_COUNT_LINES = 20_000
# A report carries at most this many problems (the total is always given): it travels in a
# workflow history and an alert, and past a few hundred a person reads the first ones anyway.
MAX_PROBLEMS = 200

# The checks, by what they compare (docs/reconcile.md explains each).
CHECKS = {
    "ledger": "on hand equals the sum of the SKU's stock movements",
    "balance": "on hand + shipped = received + adjustments",
    "received": "the received counter equals the receipts in the ledger",
    "shipped": "the shipped counter equals shipments less returns in the ledger",
    "reserved": "reserved equals the open (active) reservations",
    "receivable": "every receivable matches its invoice (customer and amount)",
    "invoice": "every invoice has its receivable",
    "shipment": "every shipment that left has its invoice",
}


class CheckRequest(Model):
    """Reconcile these SKUs (and the orders holding them); none: everything."""

    skus: list[Code40] = Field(default_factory=list, max_length=1000)


class Problem(Model):
    check: str
    sku: str | None = None
    ref: str | None = None  # the invoice, receivable or shipment concerned
    expected: str
    actual: str
    detail: str


class Report(Model):
    checked_at: datetime
    skus_checked: int
    ok: bool
    problems_total: int
    problems: list[Problem]

    def summary(self) -> str:
        """One line for an alert or a log."""
        if self.ok:
            return f"books balance: {self.skus_checked} SKU(s) checked"
        skus = sorted({p.sku for p in self.problems if p.sku})
        shown = ", ".join(skus[:5]) + (" …" if len(skus) > 5 else "")
        return (
            f"books do not balance: {self.problems_total} difference(s)"
            + (f" on {shown}" if shown else "")
            + f" ({self.skus_checked} SKU(s) checked)"
        )

    def detail(self) -> str:
        return "\n".join(p.detail for p in self.problems)


def reconcile_alert_key(run_id: str) -> str:
    return f"reconcile:{run_id}"


def report_alert(report: Report, run_id: str) -> Alert:
    """The one alert of a run whose books do not balance (its dedup key names the run)."""
    return Alert(
        dedup_key=reconcile_alert_key(run_id),
        kind="stock_reconcile",
        severity="critical",
        summary=report.summary(),
        detail=report.detail(),
    )


class RunRequest(Model):
    """One reconciliation run: its id names its alert (one alert per run)."""

    run_id: str
    skus: list[Code40] = Field(default_factory=list, max_length=1000)


class CountLineIn(Model):
    sku: Code40
    counted: Count
    bin_location: Code20 | None = None


class CountIn(Model):
    counts: list[CountLineIn] = Field(min_length=1, max_length=MAX_COUNT_LINES)
    reason: Reason
    count_id: CountId | None = None


class CountLineOut(Model):
    sku: str
    counted: int
    on_hand_before: int
    on_hand_after: int
    difference: int
    bin_location: str | None = None
    status: str  # "ok" (as booked), "adjusted" or "refused"
    note: str = ""


class CountOut(Model):
    id: str
    reason: str
    counted_by: str
    at: datetime
    differences: int
    lines: list[CountLineOut]


_COUNTED = TypeAdapter(Count)
_SKU = TypeAdapter(Code40)
_BIN = TypeAdapter(Code20)
COUNT_COLUMNS = ("sku", "counted", "bin_location")


def read_count_sheet(
    filename: str, content: bytes, limits: SheetLimits | None = None
) -> list[CountLineIn]:
    """The lines of a count sheet (columns `sku`, `counted`, optional `bin_location`), or a
    SheetError naming every bad cell by its row."""
    limits = limits or SheetLimits()
    if not content:
        raise SheetError("the file is empty")
    if len(content) > limits.max_bytes:
        raise SheetError(f"the file is over the limit of {limits.max_bytes} bytes", 413)
    if content[:4] == b"PK\x03\x04":
        header, rows = _read_xlsx(content, limits)
    elif filename.lower().endswith(".xlsx"):
        raise SheetError("the file is named .xlsx but is not an Excel workbook")
    else:
        header, rows = _read_csv(content, limits)
    names = [str(h).strip().lower() if h is not None else "" for h in header]
    missing = [c for c in COUNT_COLUMNS[:2] if c not in names]
    if missing:
        raise SheetError(
            "missing column(s): " + ", ".join(missing) + "; the first row must name the "
            "columns sku, counted and (optional) bin_location"
        )
    if not rows:
        raise SheetError("the sheet has a header but no rows")
    at = {name: names.index(name) for name in COUNT_COLUMNS if name in names}
    lines: list[CountLineIn] = []
    problems: list[str] = []
    for row_no, cells in rows:
        line = _count_line(row_no, cells, at, problems)
        if line is not None:
            lines.append(line)
    if problems:
        shown = "; ".join(problems[:20]) + (" …" if len(problems) > 20 else "")
        raise SheetError(f"{len(problems)} bad cell(s), nothing counted: {shown}")
    return lines


def _count_line(
    row_no: int, cells: list[Any], at: dict[str, int], problems: list[str]
) -> CountLineIn | None:
    def cell(name: str) -> Any:
        value = cells[at[name]] if name in at else None
        return value.strip() if isinstance(value, str) else value

    values: dict[str, Any] = {}
    for name, adapter in (("sku", _SKU), ("counted", _COUNTED), ("bin_location", _BIN)):
        raw = cell(name)
        if raw is None or raw == "":
            if name != "bin_location":
                problems.append(f"row {row_no}: {name} is empty")
            continue
        if name == "counted" and isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        try:
            values[name] = adapter.validate_python(
                str(raw) if name != "counted" else raw, strict=False
            )
        except ValidationError as err:
            why = err.errors()[0]["msg"]
            problems.append(f"row {row_no}: {name} {str(raw)[:40]!r}: {why}")
    if len(values) < 2 or "sku" not in values or "counted" not in values:
        return None
    return CountLineIn(**values)
