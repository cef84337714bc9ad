"""Order sheets (.xlsx / .csv): reading, checking, and turning rows into orders.

One row per order line; rows with the same external reference form one order. A problem
with the file itself (not a spreadsheet, missing columns, formulas, empty) refuses the
whole file; a problem with a row refuses that row's order, never half of it.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_BYTES = 20 * 2**20
MAX_ROWS = 100_000
REQUIRED = ("external_ref", "customer_code", "sku", "quantity")
COLUMN_HELP = {
    "external_ref": "your reference; rows with the same reference form one order (required)",
    "customer_code": "the customer's code, e.g. C-GLD-1 (required)",
    "sku": "the product code (required)",
    "quantity": "a whole number of units (required)",
    "unit_price": "your agreed price; leave empty for the list price",
    "ship_to_line1": "delivery address; leave the four ship_to columns empty for the "
    "customer's own address",
    "ship_to_city": "",
    "ship_to_postal_code": "",
    "ship_to_country": "two letters, e.g. CN",
    "requested_delivery_date": "YYYY-MM-DD (or an Excel date cell)",
    "special_instructions": "free text; routes the order to ops for approval",
}
COLUMNS = tuple(COLUMN_HELP)  # the template's columns, in order
# Per order, these must agree on every row of the same reference.
ORDER_LEVEL = (
    "customer_code",
    "ship_to_line1",
    "ship_to_city",
    "ship_to_postal_code",
    "ship_to_country",
    "requested_delivery_date",
    "special_instructions",
)


class SheetError(ValueError):
    """The file as a whole cannot be imported; the message says why."""


@dataclass
class Sheet:
    header: list[str]
    rows: list[list[Any]]  # as read, original cells (JSON-able)


def read_sheet(filename: str, content: bytes) -> Sheet:
    """Read an .xlsx or .csv upload, or say precisely why it cannot be read."""
    if not content:
        raise SheetError("the file is empty")
    if len(content) > MAX_BYTES:
        raise SheetError(
            f"the file is {len(content) / 2**20:.1f} MB; the limit is "
            f"{MAX_BYTES // 2**20} MB (split it)"
        )
    if content[:4] == b"PK\x03\x04":
        header, rows = _read_xlsx(content)
    elif filename.lower().endswith(".xlsx"):
        raise SheetError("the file is named .xlsx but is not an Excel workbook")
    else:
        header, rows = _read_csv(content)
    names = [str(h).strip().lower() if h is not None else "" for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise SheetError(
            "missing column(s): " + ", ".join(missing) + "; the first row must "
            "name the columns (see GET /imports/template.xlsx)"
        )
    rows = [r for r in rows if any(v not in (None, "") for v in r)]
    if not rows:
        raise SheetError("the sheet has a header but no rows")
    if len(rows) > MAX_ROWS:
        raise SheetError(f"{len(rows)} rows; at most {MAX_ROWS} per file")
    width = len(names)
    return Sheet(names, [[*r[:width], *[None] * (width - len(r))] for r in rows])


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _read_xlsx(content: bytes) -> tuple[list[Any], list[list[Any]]]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(content), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise SheetError(f"not a readable Excel workbook ({type(err).__name__})") from None
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = list(next(it, []) or [])
    rows, formulas = [], []
    for r, values in enumerate(it, start=2):
        row = []
        for c, v in enumerate(values):
            if isinstance(v, str) and v.startswith("="):
                formulas.append(f"{_col(c)}{r}")
            row.append(_cell(v))
        rows.append(row)
    wb.close()
    if formulas:
        raise SheetError(
            "formulas are not accepted (paste values instead): cell(s) "
            + ", ".join(formulas[:10])
            + (" …" if len(formulas) > 10 else "")
        )
    return header, rows


def _col(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def _read_csv(content: bytes) -> tuple[list[Any], list[list[Any]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SheetError(
            "not a spreadsheet: neither an Excel workbook nor UTF-8 CSV text"
        ) from None
    if "\x00" in text:
        raise SheetError("not a spreadsheet: the file contains binary data")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        all_rows = list(reader)
    except csv.Error as err:
        raise SheetError(f"not a readable CSV file: {err}") from None
    if not all_rows:
        raise SheetError("the file is empty")
    rows = [[v.strip() if isinstance(v, str) else v for v in r] for r in all_rows[1:]]
    for r, row in enumerate(rows, start=2):
        for c, v in enumerate(row):
            if v.startswith("="):
                raise SheetError(
                    f"formulas are not accepted (paste values instead): cell {_col(c)}{r}"
                )
    return all_rows[0], [[v if v != "" else None for v in r] for r in rows]


@dataclass
class OrderGroup:
    external_ref: str
    row_nos: list[int]
    doc: dict[str, Any] | None  # an OrderIn-shaped dict, or None when a row is bad
    errors: dict[int, str] = field(default_factory=dict)


def _text(v: Any) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip()


def _parse_date(v: Any) -> str:
    """YYYY-MM-DD only (Excel date cells arrive in that form): 03/04/2026 is ambiguous."""
    day = str(v).strip().split("T")[0]
    if len(day) == 10:
        try:
            return date.fromisoformat(day).isoformat()
        except ValueError:
            pass
    raise ValueError(f"requested_delivery_date {v!r} is not a date in YYYY-MM-DD form")


def _line(cells: dict[str, Any]) -> dict[str, Any]:
    qty = cells.get("quantity")
    try:
        quantity = int(str(qty).strip())
    except (TypeError, ValueError):
        raise ValueError(f"quantity {qty!r} is not a whole number") from None
    line: dict[str, Any] = {"sku": _text(cells.get("sku")), "quantity": quantity}
    if not line["sku"]:
        raise ValueError("sku is empty")
    price = _text(cells.get("unit_price"))
    if price is not None:
        try:
            line["unit_price"] = str(Decimal(price.replace(",", "")))
        except InvalidOperation:
            raise ValueError(f"unit_price {price!r} is not a number") from None
    return line


def group_orders(sheet: Sheet, channel: str, row_nos: list[int] | None = None) -> list[OrderGroup]:
    """Rows grouped into orders by external reference, in order of first appearance.
    Row numbers are the sheet's (the header is row 1) unless given."""
    groups: dict[str, OrderGroup] = {}
    heads: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(sheet.rows):
        row_no = row_nos[i] if row_nos else i + 2
        cells = dict(zip(sheet.header, row, strict=False))
        ref = _text(cells.get("external_ref")) or f"(row {row_no} has no external_ref)"
        group = groups.setdefault(ref, OrderGroup(ref, [], {"lines": []}))
        group.row_nos.append(row_no)
        try:
            if ref.startswith("(row "):
                raise ValueError("external_ref is empty")
            line = _line(cells)
            order_cells = {k: _text(cells.get(k)) for k in ORDER_LEVEL}
            if order_cells["requested_delivery_date"]:
                order_cells["requested_delivery_date"] = _parse_date(
                    cells.get("requested_delivery_date")
                )
            first = heads.setdefault(ref, order_cells)
            differ = [k for k in ORDER_LEVEL if first[k] != order_cells[k]]
            if differ:
                raise ValueError(
                    ", ".join(differ) + " differ(s) from the first row of "
                    f"order {ref}; they must be the same on every row"
                )
            assert group.doc is not None
            group.doc["lines"].append(line)
        except ValueError as err:
            group.errors[row_no] = str(err)
    for ref, group in groups.items():
        if group.errors:
            group.doc = None
            continue
        head = heads[ref]
        ship = [
            head[k]
            for k in ("ship_to_line1", "ship_to_city", "ship_to_postal_code", "ship_to_country")
        ]
        assert group.doc is not None
        group.doc.update(
            {
                "customer_code": head["customer_code"] or "",
                "channel": channel,
                "external_ref": ref,
                "requested_delivery_date": head["requested_delivery_date"],
                "special_instructions": head["special_instructions"],
                "ship_to": None
                if not any(ship)
                else dict(zip(("line1", "city", "postal_code", "country"), ship, strict=True)),
            }
        )
    return list(groups.values())
