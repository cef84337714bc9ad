"""Reading sheets: only as wide as the header, only as long as the cap, never a zip bomb."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from datetime import time

import pytest
from openpyxl import Workbook

from orderflow.domain.sheets import (
    COLUMNS,
    SheetError,
    SheetLimits,
    group_orders,
    read_sheet,
)


def xlsx(rows: list[list], header: list | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(header or list(COLUMNS))
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def rewrite_sheet(content: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The same workbook with its first sheet's XML passed through `change`."""
    src = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = change(data)
            z.writestr(info.filename, data)
    return out.getvalue()


def claim_whole_grid(content: bytes) -> bytes:
    """The workbook with its sheet claiming all of Excel's grid, A1:XFD1048576."""
    return rewrite_sheet(
        content,
        lambda xml: re.sub(
            rb'<dimension ref="[^"]*" ?/>', b'<dimension ref="A1:XFD1048576"/>', xml
        ),
    )


def hostile_sheet(rows: int = 2000, last: list | None = None) -> bytes:
    """About 38 KiB of valid order rows whose sheet claims the whole of Excel's grid: openpyxl
    pads every row to 16,384 cells unless told otherwise (10 s and 550 MB for this one)."""
    return claim_whole_grid(
        xlsx([[f"H-{i}", "C-1", "SKU-1", 1] for i in range(rows)] + ([last] if last else []))
    )


def test_a_sheet_claiming_the_whole_grid_is_read_as_wide_as_its_header():
    content = hostile_sheet()
    assert len(content) < 48 * 1024
    tracemalloc.start()
    try:
        sheet = read_sheet("hostile.xlsx", content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(sheet.rows) == 2000
    assert {len(r) for r in sheet.rows} == {len(COLUMNS)}
    # Padded to 16,384 cells a row, this peaked at over 500 MB.
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.0f} MB"


def test_rows_past_the_cap_refuse_the_file_with_413():
    content = xlsx([[f"R-{i}", "C-1", "SKU-1", 1] for i in range(11)])
    with pytest.raises(SheetError, match="more than 10 rows; the limit is 10 rows") as err:
        read_sheet("x.xlsx", content, SheetLimits(max_rows=10))
    assert err.value.status == 413
    csv = ("external_ref,customer_code,sku,quantity\n" + "R,C,S,1\n" * 11).encode()
    with pytest.raises(SheetError, match="more than 10 rows") as err:
        read_sheet("x.csv", csv, SheetLimits(max_rows=10))
    assert err.value.status == 413
    assert len(read_sheet("x.xlsx", content, SheetLimits(max_rows=11)).rows) == 11


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    # 40 MB of XML whitespace inside the sheet: a few dozen KB packed.
    bomb = rewrite_sheet(xlsx([["B-1", "C-1", "SKU-1", 1]]), lambda xml: xml + b" " * 40 * 2**20)
    assert len(bomb) < 200 * 1024
    with pytest.raises(SheetError, match="unpacks to 40.0 MB; the limit is 16 MB") as err:
        read_sheet("bomb.xlsx", bomb, SheetLimits(max_unzipped_bytes=16 * 2**20))
    assert err.value.status == 413


def test_cells_beyond_the_header_are_not_read_and_rows_keep_their_numbers():
    header = [*COLUMNS[:4], None, None]
    content = xlsx(
        [
            ["A-1", "C-1", "SKU-1", 1, None, "stray"],
            [],  # a blank row: the next is still row 4
            ["A-2", "C-1", "SKU-1", 2],
        ],
        header=header,
    )
    sheet = read_sheet("x.xlsx", content)
    assert sheet.header == list(COLUMNS[:4])
    assert sheet.rows == [["A-1", "C-1", "SKU-1", 1], ["A-2", "C-1", "SKU-1", 2]]
    assert sheet.row_nos == [2, 4]
    assert [g.row_nos for g in group_orders(sheet, "import")] == [[2], [4]]


def test_any_cell_type_becomes_a_problem_naming_row_and_column():
    content = xlsx(
        [
            ["T-1", "C-1", "SKU-1", 1],
            ["T-2", "C-1", "SKU-1", time(10, 30)],
        ]
    )
    sheet = read_sheet("x.xlsx", content)
    assert sheet.rows[1][3] == "10:30:00"  # stored (and echoed) as text
    first, second = group_orders(sheet, "import")
    assert first.doc is not None and not first.errors
    assert second.doc is None
    assert "cell D3 (quantity) holds a time of day (10:30:00)" in second.errors[3]


def test_an_external_ref_longer_than_its_column_is_a_row_problem():
    sheet = read_sheet(
        "x.csv", f"external_ref,customer_code,sku,quantity\n{'R' * 201},C,S,1\n".encode()
    )
    (group,) = group_orders(sheet, "import")
    assert len(group.external_ref) <= 200 and group.doc is None
    assert "external_ref" in group.errors[2] and "at most 200" in group.errors[2]
