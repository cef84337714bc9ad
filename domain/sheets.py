"""Order sheets (.xlsx / .csv): reading, checking, and turning rows into orders.

One row per order line; rows with the same external reference form one order. A problem
with the file itself (not a spreadsheet, missing columns, formulas, empty, too big) refuses
the whole file; a problem with a row refuses that row's order, never half of it.

A sheet is read only as wide as its header and as long as the row cap, and an .xlsx is
measured unpacked before it is parsed: what a file claims about itself (its dimension, its
sizes) never decides how much work reading it takes.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree import ElementTree

from pydantic import TypeAdapter, ValidationError

from domain.types import Name200

MAX_BYTES = 32 * 2**20
MAX_ROWS = 100_000
# A real 20,000-row sheet of the template's 11 columns unpacks to 12.6 MiB as openpyxl
# writes it (inline strings) and to 8.7 MiB as Excel does (7.7 MiB sheet + 1.0 MiB shared
# strings); docs/limits.md. 100,000 rows (the row cap since issue 18) are five times that:
# 63 MiB, or 38.5 + 5 MiB. The caps leave room above that and bound the parser's work.
MAX_UNZIPPED_BYTES = 128 * 2**20
# A worksheet is read as a stream, row by row; every other XML part (the shared strings
# above all: openpyxl loads them whole, ~0.8 s of CPU per MiB of tiny strings) in full.
MAX_SHEET_PART_BYTES = 100 * 2**20
MAX_PART_BYTES = 8 * 2**20
WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
# A header wider than this is read only this far: the template has 11 columns.
MAX_COLUMNS = 64
# An .xlsx is a handful of parts; thousands of them is not a workbook a person made.
MAX_ZIP_MEMBERS = 1000
EXCEL_MAX_ROWS = 1_048_576
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
_EXTERNAL_REF = TypeAdapter(Name200)


class SheetError(ValueError):
    """The file as a whole cannot be imported; the message says why. `status` is 413 when
    the file is over a size limit, else 422."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SheetLimits:
    """How much of an upload is read (ORDERFLOW_IMPORT_* settings)."""

    max_bytes: int = MAX_BYTES
    max_rows: int = MAX_ROWS
    max_unzipped_bytes: int = MAX_UNZIPPED_BYTES
    max_columns: int = MAX_COLUMNS
    max_sheet_part_bytes: int = MAX_SHEET_PART_BYTES
    max_part_bytes: int = MAX_PART_BYTES


@dataclass
class Sheet:
    header: list[str]
    rows: list[list[Any]]  # as read, original cells (JSON-able), as wide as the header
    # The sheet's own row number of each row (the header is row 1; blank rows are skipped).
    row_nos: list[int] = field(default_factory=list)
    # Cells that cannot be read as their column, by row number: they refuse the row's order.
    problems: dict[int, list[str]] = field(default_factory=dict)


def read_sheet(filename: str, content: bytes, limits: SheetLimits | None = None) -> Sheet:
    """Read an .xlsx or .csv upload whole, or say precisely why it cannot be read
    (`stream_sheet`'s parts, joined)."""
    limits = limits or SheetLimits()
    sheet: Sheet | None = None
    for part in stream_sheet(filename, content, limits, chunk=max(limits.max_rows, 1)):
        if sheet is None:
            sheet = part
            continue
        sheet.rows += part.rows
        sheet.row_nos += part.row_nos
        sheet.problems.update(part.problems)
    assert sheet is not None  # stream_sheet raises for a sheet without rows
    return sheet


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n % 2**20 else f"{n // 2**20} MB"


def _too_many_rows(limits: SheetLimits) -> SheetError:
    return SheetError(
        f"the sheet has more than {limits.max_rows:,} rows; the limit is "
        f"{limits.max_rows:,} rows per file (split it)",
        413,
    )


def _cell(value: Any) -> tuple[Any, str | None]:
    """A cell as JSON (what is stored and echoed), and what is wrong with it, if anything."""
    if value is None or isinstance(value, str | bool | int):
        return value, None
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value), "a number that is not finite"
        return (int(value) if value.is_integer() and abs(value) < 2**53 else value), None
    if isinstance(value, Decimal):
        return str(value), None
    if isinstance(value, datetime):
        return (
            value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
        ), None
    if isinstance(value, date):
        return value.isoformat(), None
    if isinstance(value, time):
        return value.isoformat(), f"a time of day ({value.isoformat()})"
    if isinstance(value, timedelta):
        return str(value), f"a duration ({value})"
    return _short(value), f"a value of an unsupported kind ({type(value).__name__})"


def _check_zip(content: bytes, limits: SheetLimits) -> None:
    """Refuse a workbook that unpacks to more than the limit, before anything unpacks it.
    The sizes are the archive's own claims, but zipfile never inflates a part beyond its
    claimed size (and then fails its CRC), so a lie only makes the file unreadable."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise SheetError(f"not a readable Excel workbook ({type(err).__name__})") from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise SheetError(
            f"the workbook holds {len(infos):,} parts; a workbook has at most {MAX_ZIP_MEMBERS:,}",
            413,
        )
    unpacked = sum(i.file_size for i in infos)
    if unpacked > limits.max_unzipped_bytes:
        raise SheetError(
            f"the workbook unpacks to {_mb(unpacked)}; the limit is "
            f"{_mb(limits.max_unzipped_bytes)} unpacked (split it, or save it without "
            "images and extra sheets)",
            413,
        )
    worksheets = _worksheet_parts(content, infos, limits)
    for info in infos:
        name = info.filename
        if not name.lower().endswith((".xml", ".rels")):
            continue  # images and the like: counted in the total, never parsed
        is_sheet = name in worksheets
        cap = limits.max_sheet_part_bytes if is_sheet else limits.max_part_bytes
        if info.file_size > cap:
            what = "its worksheet" if is_sheet else f"its part {name}"
            if "sharedstrings" in name.lower():
                what = "its shared strings (the text of its cells)"
            raise SheetError(
                f"the workbook is too big to read: {what} unpacks to {_mb(info.file_size)}; "
                f"the limit is {_mb(cap)} (split it)",
                413,
            )


def _worksheet_parts(content: bytes, infos: list[zipfile.ZipInfo], limits: SheetLimits) -> set[str]:
    """The parts [Content_Types].xml declares worksheets (read as streams: a larger cap).
    A part declared as anything else, or not declared, has the cap of a part read whole."""
    types = next((i for i in infos if i.filename == "[Content_Types].xml"), None)
    if types is None or types.file_size > limits.max_part_bytes:
        return set()  # not a workbook openpyxl opens, or refused by the part cap
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            root = ElementTree.fromstring(z.read(types))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, ElementTree.ParseError):
        return set()
    return {
        (el.get("PartName") or "").lstrip("/")
        for el in root
        if el.tag.endswith("}Override") and el.get("ContentType") == WORKSHEET_TYPE
    }


# A sheet's data rows, each with its row number in the sheet.
NumberedRows = list[tuple[int, list[Any]]]


def _read_xlsx(content: bytes, limits: SheetLimits) -> tuple[list[Any], NumberedRows]:
    """The header and every data row (domain/reconcile.py reads counts sheets with it)."""
    raw = _xlsx_stream(content, limits)
    header = next(raw)[1]
    return header, list(raw)


def _trim(values: list[Any]) -> list[Any]:
    while values and (values[-1] is None or values[-1] == ""):
        values.pop()
    return values


def _col(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def _read_csv(content: bytes, limits: SheetLimits) -> tuple[list[Any], NumberedRows]:
    """The header and every data row (domain/reconcile.py reads counts sheets with it)."""
    raw = _csv_stream(content, limits)
    header = next(raw)[1]
    return header, list(raw)


@dataclass
class OrderGroup:
    external_ref: str
    row_nos: list[int]
    doc: dict[str, Any] | None  # an OrderIn-shaped dict, or None when a row is bad
    errors: dict[int, str] = field(default_factory=dict)


def _text(v: Any) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip()


def _short(v: Any, limit: int = 40) -> str:
    """A cell as quoted in a message: never the whole of a huge one."""
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _parse_date(v: Any) -> str:
    """YYYY-MM-DD only (Excel date cells arrive in that form): 03/04/2026 is ambiguous."""
    day = str(v).strip().split("T")[0]
    if len(day) == 10:
        try:
            return date.fromisoformat(day).isoformat()
        except ValueError:
            pass
    raise ValueError(f"requested_delivery_date {_short(v)} is not a date in YYYY-MM-DD form")


def _line(cells: dict[str, Any]) -> dict[str, Any]:
    qty = cells.get("quantity")
    text = str(qty).strip() if isinstance(qty, str | int) and not isinstance(qty, bool) else ""
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        raise ValueError(f"quantity {_short(qty)} is not a whole number")
    line: dict[str, Any] = {"sku": _text(cells.get("sku")), "quantity": int(text)}
    if not line["sku"]:
        raise ValueError("sku is empty")
    price = _text(cells.get("unit_price"))
    if price is not None:
        try:
            amount = Decimal(price.replace(",", ""))
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite():
            raise ValueError(f"unit_price {_short(price)} is not a number")
        line["unit_price"] = str(amount)
    return line


def _external_ref(value: Any) -> str:
    if _text(value) is None:
        raise ValueError("external_ref is empty")
    try:
        return str(_EXTERNAL_REF.validate_python(_text(value) or ""))
    except ValidationError as err:
        raise ValueError(f"external_ref {_short(value)}: {err.errors()[0]['msg']}") from None


def group_orders(sheet: Sheet, channel: str, row_nos: list[int] | None = None) -> list[OrderGroup]:
    """Rows grouped into orders by external reference, in order of first appearance.
    Row numbers are the sheet's (the header is row 1) unless given."""
    groups: dict[str, OrderGroup] = {}
    heads: dict[str, dict[str, Any]] = {}
    numbers = row_nos or sheet.row_nos
    for i, row in enumerate(sheet.rows):
        row_no = numbers[i] if numbers else i + 2
        cells = dict(zip(sheet.header, row, strict=False))
        try:
            ref = _external_ref(cells.get("external_ref"))
            bad_ref = None
        except ValueError as err:
            # Still a key for the row's own group, and short enough for its column.
            ref, bad_ref = f"(row {row_no}: no usable external_ref)", str(err)
        group = groups.setdefault(ref, OrderGroup(ref, [], {"lines": []}))
        group.row_nos.append(row_no)
        try:
            if bad_ref:
                raise ValueError(bad_ref)
            if row_no in sheet.problems:
                raise ValueError("; ".join(sheet.problems[row_no]))
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


def stream_sheet(
    filename: str, content: bytes, limits: SheetLimits, chunk: int
) -> Generator[Sheet]:
    """`read_sheet`, handed out `chunk` rows at a time (each part a Sheet with the whole
    header, its rows' own numbers and problems), so an upload never holds all its rows.
    The same checks and messages, in the same order: a problem found only at the end (a
    formula, one row too many, a missing column, no rows) is raised after the parts before
    it were handed out, so the caller stores the parts in one transaction and rolls back.

    `read_sheet` is this, joined."""
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
    """An .xlsx upload's rows, one by one: the header first."""
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
    """The first worksheet's rows: formulas are collected and refused at the end. The
    sheet's <dimension> is a claim (A1:XFD1048576 would pad every row to 16,384 cells):
    forget it, and read at most `max_columns` cells of a row, then the header's."""
    if not wb.worksheets:
        raise SheetError("the workbook has no worksheet")
    ws = wb.worksheets[0]
    ws.reset_dimensions()
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
    """A CSV upload's rows, one by one: the header first. The delimiter is the one the
    header uses most (csv.Sniffer's regexes take seconds on a crafted first 4 KB)."""
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
