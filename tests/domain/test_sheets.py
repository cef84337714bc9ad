"""Reading sheets: only as wide as the header, only as long as the cap, never a zip bomb."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from collections.abc import Callable
from datetime import time

import pytest

from domain.sheets import (
    COLUMNS,
    SheetError,
    SheetLimits,
    group_orders,
    read_sheet,
)
from tests.api.test_imports import xlsx


def rewrite_sheet(content: bytes, change: Callable[[bytes], bytes]) -> bytes:
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


def with_shared_strings(content: bytes, strings: int) -> bytes:
    """The workbook with a shared-strings part of `strings` one-letter strings (openpyxl
    loads that part whole, whatever the sheet uses of it)."""
    src = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    ns = b"http://schemas.openxmlformats.org/"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
                )
            if info.filename == "xl/_rels/workbook.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdSS" Type="' + ns + b"officeDocument/2006/"
                    b'relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
                )
            z.writestr(info.filename, data)
        z.writestr(
            "xl/sharedStrings.xml",
            b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="' + ns + b"spreadsheetml/2006/"
            b'main">' + b"<si><t>a</t></si>" * strings + b"</sst>",
        )
    return out.getvalue()


def test_shared_strings_past_their_cap_are_refused_unread_with_the_default_limits():
    # 16 MiB of <si><t>a</t></si>: under the total, about 13 s of CPU for openpyxl to load.
    bomb = with_shared_strings(xlsx([["S-1", "C-1", "SKU-1", 1]]), 16 * 2**20 // 17)
    assert len(bomb) < 100 * 1024
    with pytest.raises(
        SheetError, match=r"shared strings .* unpacks to 16.0 MB; the limit is 8 MB"
    ):
        read_sheet("strings.xlsx", bomb)
    # A worksheet part has its own cap, below the total.
    big = rewrite_sheet(xlsx([["B-1", "C-1", "SKU-1", 1]]), lambda xml: xml + b" " * 101 * 2**20)
    with pytest.raises(
        SheetError, match="its worksheet unpacks to 101.0 MB; the limit is 100 MB"
    ):
        read_sheet("big.xlsx", big)
    # Any other part read whole is capped like the shared strings, whatever its name.
    styles = rewrite_sheet(xlsx([["B-1", "C-1", "SKU-1", 1]]), lambda xml: xml)
    src = zipfile.ZipFile(io.BytesIO(styles))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            z.writestr(
                info.filename, data + b" " * 9 * 2**20 if "styles" in info.filename else data
            )
    with pytest.raises(SheetError, match="its part xl/styles.xml unpacks to") as err:
        read_sheet("styles.xlsx", out.getvalue())
    assert err.value.status == 413


def _inline_row(n: int) -> bytes:
    order = n // 3
    cells = [
        f"PO-{100000 + order}",
        f"C-CUST-{order % 500:04d}",
        f"SKU-{n % 2000:05d}",
        None,
        f"{n % 1000 / 10 + 1:.2f}",
        f"{order % 900 + 1} Long Street Name Number {order}",
        f"City {order % 200}",
        f"{200000 + order % 999}",
        "CN",
        None,
        f"Please deliver to the back door, order {order}, call before",
    ]
    xml = [f'<row r="{n}">']
    for c, value in enumerate(cells):
        ref = f"{'ABCDEFGHIJK'[c]}{n}"
        if value is None:
            xml.append(
                f'<c r="{ref}" t="n"><v>{47484 + order % 300 if c == 9 else n % 50 + 1}</v></c>'
            )
        else:
            xml.append(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
    xml.append("</row>")
    return "".join(xml).encode()


def test_a_real_20000_row_sheet_fits_the_default_limits():
    """The row cap's worth of the template's 11 columns, as openpyxl writes it (inline
    strings; Excel's shared strings make it smaller): about 12.6 MiB unpacked."""
    rows = b"".join(_inline_row(n) for n in range(2, 20_002))

    def fill(xml: bytes) -> bytes:
        return re.sub(
            rb"<sheetData>.*</sheetData>",
            lambda m: m.group(0)[:-12] + rows + b"</sheetData>",
            xml,
            flags=re.S,
        )

    content = rewrite_sheet(xlsx([]), fill)
    unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(content)).infolist())
    assert 12 * 2**20 < unpacked < SheetLimits().max_unzipped_bytes
    sheet = read_sheet("real.xlsx", content)
    assert len(sheet.rows) == 20_000 and len(sheet.header) == len(COLUMNS)
