"""Import rows: what both the upload (api/routes/imports.py) and the import activities
(activities/imports.py) say about the sheet rows of one order."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator
from typing import Any

from db.models import ImportRow
from domain.problems import Problem
from domain.sheets import (
    COLUMN_HELP,
    EXCEL_MAX_ROWS,
    REQUIRED,
    Sheet,
    SheetError,
    SheetLimits,
    _cell,
    _check_zip,
    _col,
    _external_ref,
    _mb,
    _too_many_rows,
    _trim,
)


def row_messages(problems: list[Problem], row_nos: list[int]) -> dict[int, str]:
    """Each problem on the row it belongs to: line i is the group's i-th row; order-level
    problems go on the first row."""
    out: dict[int, list[str]] = {}
    for p in problems:
        loc = [x for x in p.loc if x != "body"]
        row = (
            row_nos[loc[1]]
            if len(loc) > 1
            and loc[0] == "lines"
            and isinstance(loc[1], int)
            and loc[1] < len(row_nos)
            else row_nos[0]
        )
        out.setdefault(row, []).append(p.message)
    return {row: "; ".join(msgs) for row, msgs in out.items()}


def sheet_column(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """The sheet column an OrderIn field comes from: lines.0.quantity is `quantity`,
    ship_to.city is `ship_to_city`."""
    parts = [str(x) for x in loc if x != "body"]
    if parts[:1] == ["lines"] and len(parts) >= 3:
        return parts[2]
    if parts[:1] == ["ship_to"] and len(parts) >= 2:
        return "ship_to_" + parts[1]
    return parts[0] if parts else "row"


def reject_group(rows: list[ImportRow], messages: dict[int, str]) -> None:
    """Nothing half-imports: one bad row refuses its whole order, and says which row."""
    bad = sorted(messages)
    for row in rows:
        row.status = "rejected"
        row.message = messages.get(row.row_no) or (
            f"not imported: row {bad[0]} of the same order has errors"
        )


def stream_sheet(
    filename: str, content: bytes, limits: SheetLimits, chunk: int
) -> Generator[Sheet]:
    """`read_sheet`, handed out `chunk` rows at a time (each part a Sheet with the whole
    header, its rows' own numbers and problems), so an upload never holds all its rows.
    The same checks and messages, in the same order: a problem found only at the end (a
    formula, one row too many, a missing column, no rows) is raised after the parts before
    it were handed out, so the caller stores the parts in one transaction and rolls back.

    (A streaming twin of domain/sheets.read_sheet, built on its helpers; read_sheet could be
    this, joined.)"""
    if not content:
        raise SheetError("the file is empty")
    if len(content) > limits.max_bytes:
        raise SheetError(
            f"the file is {_mb(len(content))}; the limit is {_mb(limits.max_bytes)} (split it)",
            413,
        )
    if content[:4] == b"PK\x03\x04":
        raw = _xlsx_stream(content, limits)
    elif filename.lower().endswith(".xlsx"):
        raise SheetError("the file is named .xlsx but is not an Excel workbook")
    else:
        raw = _csv_stream(content, limits)
    header = next(raw)[1]
    names = [str(h).strip().lower() if h is not None else "" for h in header]
    missing = [c for c in REQUIRED if c not in names]
    part = Sheet(names, [], [])
    seen = 0
    for row_no, values in raw:
        seen += 1
        if missing:
            continue  # refused below, once the file's own checks have run to its end
        cells = []
        for c, v in enumerate(values):
            value, why = _cell(v)
            if why and names[c] in COLUMN_HELP:
                part.problems.setdefault(row_no, []).append(
                    f"cell {_col(c)}{row_no} ({names[c]}) holds {why}; "
                    "type the value as text, a number or a date"
                )
            cells.append(value)
        part.rows.append(cells)
        part.row_nos.append(row_no)
        if len(part.rows) >= chunk:
            yield part
            part = Sheet(names, [], [])
    if missing:
        raise SheetError(
            "missing column(s): " + ", ".join(missing) + "; the first row must "
            "name the columns (see GET /imports/template.xlsx)"
        )
    if not seen:
        raise SheetError("the sheet has a header but no rows")
    if part.rows:
        yield part


def order_refs(part: Sheet) -> list[str]:
    """Each row's order, as `group_orders` keys it (and the activity groups it again): its
    external reference, or a key of its own for a row without a usable one. Only the key:
    the order is checked once, as it is made."""
    # dict(zip(header, row)) in group_orders: the last of same-named columns wins.
    col = max((i for i, name in enumerate(part.header) if name == "external_ref"), default=None)
    refs = []
    for row_no, row in zip(part.row_nos, part.rows, strict=True):
        try:
            refs.append(_external_ref(row[col] if col is not None else None))
        except ValueError:
            refs.append(f"(row {row_no}: no usable external_ref)")
    return refs


# The header first (row 1), then each data row with its number in the sheet.
RawRows = Iterator[tuple[int, list[Any]]]


def _xlsx_stream(content: bytes, limits: SheetLimits) -> RawRows:
    """domain/sheets._read_xlsx, row by row."""
    _check_zip(content, limits)
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(content), read_only=True, data_only=False)
    except Exception as err:  # noqa: BLE001 (any damage means the same to the uploader)
        raise SheetError(f"not a readable Excel workbook ({type(err).__name__})") from None
    try:
        yield from _xlsx_rows(wb, limits)
    except SheetError:
        raise
    except Exception as err:  # noqa: BLE001
        raise SheetError(f"not a readable Excel workbook ({type(err).__name__})") from None
    finally:
        wb.close()


def _xlsx_rows(wb: Any, limits: SheetLimits) -> RawRows:
    """domain/sheets._xlsx_rows, row by row: formulas are collected and refused at the end."""
    if not wb.worksheets:
        raise SheetError("the workbook has no worksheet")
    ws = wb.worksheets[0]
    ws.reset_dimensions()  # the sheet's <dimension> is a claim: see domain/sheets.py
    formulas: list[str] = []
    width = limits.max_columns
    rows = 0
    header_seen = False
    for row_no, values in enumerate(ws.iter_rows(max_col=width, values_only=True), start=1):
        if row_no > EXCEL_MAX_ROWS:
            raise SheetError(f"the sheet has rows past Excel's last row {EXCEL_MAX_ROWS:,}")
        if row_no == 1:
            header = _trim(list(values))
            width = len(header)
            header_seen = True
            yield 1, header
            continue
        cells = list(values[:width])
        if all(v is None or v == "" for v in cells):
            continue
        if rows >= limits.max_rows:
            raise _too_many_rows(limits)
        rows += 1
        for c, v in enumerate(cells):
            if isinstance(v, str) and v.startswith("="):
                formulas.append(f"{_col(c)}{row_no}")
        yield row_no, cells + [None] * (width - len(cells))
    if not header_seen:
        yield 1, []
    if formulas:
        raise SheetError(
            "formulas are not accepted (paste values instead): cell(s) "
            + ", ".join(formulas[:10])
            + (" …" if len(formulas) > 10 else "")
        )


def _csv_stream(content: bytes, limits: SheetLimits) -> RawRows:
    """domain/sheets._read_csv, row by row."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SheetError(
            "not a spreadsheet: neither an Excel workbook nor UTF-8 CSV text"
        ) from None
    if "\x00" in text:
        raise SheetError("not a spreadsheet: the file contains binary data")
    first_line = text[:4096].split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if any(map(first_line.count, ",;\t")) else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = 0
    try:
        header = _trim(next(reader, [])[: limits.max_columns])
        width = len(header)
        yield 1, header
        for row_no, record in enumerate(reader, start=2):
            cells = [v.strip() or None for v in record[:width]]
            if all(v is None for v in cells):
                continue
            if rows >= limits.max_rows:
                raise _too_many_rows(limits)
            rows += 1
            for c, v in enumerate(cells):
                if v is not None and v.startswith("="):
                    raise SheetError(
                        f"formulas are not accepted (paste values instead): cell {_col(c)}{row_no}"
                    )
            yield row_no, cells + [None] * (width - len(cells))
    except csv.Error as err:
        raise SheetError(f"not a readable CSV file: {err}") from None
    if not header:
        raise SheetError("the file is empty")
