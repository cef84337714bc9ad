"""Spreadsheet imports: upload, progress, result file, template."""

from __future__ import annotations

import asyncio
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response
from openpyxl import Workbook
from sqlalchemy import func, select
from temporalio.common import WorkflowIDReusePolicy

from orderflow.activities.imports import reject_group
from orderflow.api.deps import Caller, SessionDep, StateDep, require
from orderflow.db.models import Import, ImportRow
from orderflow.domain.payloads import ImportInput, Model
from orderflow.domain.sheets import (
    COLUMN_HELP,
    COLUMNS,
    MAX_BYTES,
    SheetError,
    group_orders,
    read_sheet,
)

router = APIRouter(prefix="/imports", tags=["imports"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Importer = Annotated[Caller, Depends(require("sales"))]
# Small files are answered with their summary; larger ones with 202 and a progress URL.
WAIT_FOR_SMALL_IMPORTS_S = 10.0


class ImportSummary(Model):
    id: int
    filename: str
    channel: str
    status: str
    rows: int
    orders: int
    orders_created: int
    orders_duplicate: int
    orders_rejected: int
    rows_rejected: int
    rows_pending: int
    created_at: datetime
    finished_at: datetime | None
    result_url: str


def _xlsx(wb: Workbook, filename: str) -> Response:
    buf = io.BytesIO()
    wb.save(buf)
    return Response(
        buf.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/template.xlsx")
async def template() -> Response:
    """An empty order sheet with an example row, and a sheet explaining each column."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "orders"
    ws.append(list(COLUMNS))
    ws.append(
        ["PO-1001", "C-GLD-1", "WID-001", 10, None, None, None, None, None, "2030-01-31", None]
    )
    ws.append(
        ["PO-1001", "C-GLD-1", "BOLT-M6", 20, "3.90", None, None, None, None, "2030-01-31", None]
    )
    help_ws = wb.create_sheet("columns")
    help_ws.append(["column", "meaning"])
    for col in COLUMNS:
        help_ws.append([col, COLUMN_HELP[col]])
    return _xlsx(wb, "orderflow-import-template.xlsx")


async def summary(session: SessionDep, imp: Import) -> ImportSummary:
    counts = dict(
        (
            await session.execute(
                select(ImportRow.status, func.count())
                .where(ImportRow.import_id == imp.id)
                .group_by(ImportRow.status)
            )
        ).all()
    )
    orders = dict(
        (
            await session.execute(
                select(ImportRow.status, func.count(func.distinct(ImportRow.external_ref)))
                .where(ImportRow.import_id == imp.id)
                .group_by(ImportRow.status)
            )
        ).all()
    )
    return ImportSummary(
        id=imp.id,
        filename=imp.filename,
        channel=imp.channel,
        status=imp.status,
        rows=imp.total_rows,
        orders=imp.total_orders,
        orders_created=orders.get("created", 0),
        orders_duplicate=orders.get("duplicate", 0),
        orders_rejected=orders.get("rejected", 0),
        rows_rejected=counts.get("rejected", 0),
        rows_pending=counts.get("pending", 0),
        created_at=imp.created_at,
        finished_at=imp.finished_at,
        result_url=f"/imports/{imp.id}/result.xlsx",
    )


@router.post("", status_code=201)
async def upload(
    state: StateDep,
    user: Importer,
    file: Annotated[UploadFile, File(description=".xlsx or .csv, one row per order line")],
    channel: Annotated[str, Form(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$")] = "import",
) -> JSONResponse:
    """Check the file, keep its rows, and start an ImportWorkflow for them."""
    content = await file.read(MAX_BYTES + 1)
    try:
        sheet = read_sheet(file.filename or "upload", content)
    except SheetError as err:
        code = 413 if "limit is" in str(err) else 422
        raise HTTPException(code, f"{file.filename}: {err}") from None
    groups = group_orders(sheet, channel)
    async with state.sessions() as s:
        imp = Import(
            filename=file.filename or "upload",
            channel=channel,
            created_by=user.name,
            status="running",
            total_rows=len(sheet.rows),
            total_orders=len(groups),
            header=sheet.header,
        )
        s.add(imp)
        await s.flush()
        for g in groups:
            rows = [
                ImportRow(
                    import_id=imp.id,
                    row_no=n,
                    external_ref=g.external_ref,
                    cells=sheet.rows[n - 2],
                    status="pending",
                )
                for n in g.row_nos
            ]
            if g.doc is None:
                reject_group(rows, g.errors)
            s.add_all(rows)
        await s.commit()
        import_id = imp.id
    handle = await state.client.start_workflow(
        "ImportWorkflow",
        ImportInput(import_id=import_id),
        id=f"import-{import_id}",
        task_queue=state.settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    try:
        await asyncio.wait_for(handle.result(), WAIT_FOR_SMALL_IMPORTS_S)
        code = 201
    except TimeoutError:
        code = 202  # still running: follow GET /imports/{id}
    async with state.sessions() as s:
        done = await summary(s, await s.get_one(Import, import_id))
    return JSONResponse(status_code=code, content=done.model_dump(mode="json"))


@router.get("/{import_id}")
async def get_import(import_id: int, session: SessionDep, _: Importer) -> ImportSummary:
    imp = await session.get(Import, import_id)
    if imp is None:
        raise HTTPException(404, f"no import {import_id}")
    return await summary(session, imp)


@router.get("/{import_id}/result.xlsx")
async def result(import_id: int, session: SessionDep, _: Importer) -> Response:
    """The sheet as uploaded, plus what happened to each row and why."""
    imp = await session.get(Import, import_id)
    if imp is None:
        raise HTTPException(404, f"no import {import_id}")
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "result"
    ws.append([*imp.header, "status", "order_id", "message"])
    rows = await session.scalars(
        select(ImportRow).where(ImportRow.import_id == imp.id).order_by(ImportRow.row_no)
    )
    for r in rows:
        ws.append([*(_safe(v) for v in r.cells), r.status, r.order_id, r.message])
    return _xlsx(wb, f"{imp.filename.rsplit('.', 1)[0]}-result.xlsx")


def _safe(value: Any) -> Any:
    """Never write a formula back into a sheet a person will open."""
    return "'" + value if isinstance(value, str) and value[:1] in "=+-@" else value
