"""Spreadsheet imports: upload, progress, result file, template."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import deque
from collections.abc import Generator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.common import WorkflowIDReusePolicy

from api.deps import AppState, Caller, SessionDep, StateDep, require
from api.errors import responses
from api.outages import RETRY_AFTER_S, temporal_outage
from db.models import Import, ImportRow
from domain.base import Model
from domain.imports import ImportInput
from domain.sheets import (
    COLUMN_HELP,
    COLUMNS,
    Sheet,
    SheetError,
    SheetLimits,
    order_refs,
    stream_sheet,
)
from domain.types import DbId
from services.config import Settings
from services.intake import check_webhook_channel
from workflows.imports import ImportWorkflow

router = APIRouter(prefix="/imports", tags=["imports"], responses=responses(404))
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Importer = Annotated[Caller, Depends(require("sales"))]
# The upload's channel field (the console's upload form declares it the same way).
UploadChannel = Annotated[str, Form(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$")]
# Small files are answered with their summary; larger ones with 202 and a progress URL.
WAIT_FOR_SMALL_IMPORTS_S = 10.0
# Sheets parsed at once, each in a thread (never on the event loop): each is bounded by
# the limits, and this bounds how many of them share the memory.
PARALLEL_PARSES = 1
FILENAME_MAX = 300  # imports.filename
# Multipart framing around the file: boundaries, part headers, the `channel` field.
FORM_OVERHEAD = 64 * 1024
log = logging.getLogger("orderflow.api")
INSERT_CHUNK = 2000  # import rows per multi-row INSERT
RESULT_CHUNK = 2000  # import rows read at a time for the result sheet


class UploadTooLarge(HTTPException):
    def __init__(self, detail: str):
        super().__init__(413, detail)


# A console form (sign-in, a decision, an order entered by hand) is a few kilobytes; the
# console reads every POST's form before it checks who is asking, so it is capped too.
CONSOLE_FORM_MAX_BYTES = 2**20


class UploadLimit:
    """413 for an upload larger than `import_max_bytes` (plus the form's framing) before its
    form is parsed: by Content-Length, before a byte is read; without one (chunked) or when
    it lies, as soon as the body passes the limit. Starlette would otherwise spool the whole
    body to disk before the route could look at it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") if scope["type"] == "http" else ""
        if scope.get("method") != "POST" or not (
            path in (router.prefix, "/ui" + router.prefix) or path.startswith("/ui/")
        ):
            await self.app(scope, receive, send)
            return
        max_bytes = scope["app"].state.orderflow.settings.import_max_bytes
        if path.startswith("/ui/") and path != "/ui" + router.prefix:
            max_bytes = CONSOLE_FORM_MAX_BYTES  # the console's other forms are a few fields
        limit = max_bytes + FORM_OVERHEAD
        too_large = f"the upload is over the limit of {_size(max_bytes)} per file (split it)"
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isascii() or not declared.isdigit()):
            response = JSONResponse({"detail": "Content-Length must be a number of bytes"}, 400)
            await response(scope, receive, send)
            return
        # (Past 18 digits it is over any limit; int() of thousands of digits would raise.)
        size = int(declared) if declared is not None and len(declared) <= 18 else None
        if declared is not None and (size is None or size > limit):
            response = JSONResponse(
                {
                    "detail": f"the upload is {_size(size) if size else 'over an exabyte'}; "
                    f"the limit is {_size(max_bytes)} per file (split it)"
                },
                413,
            )
            await response(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(too_large)  # FastAPI answers it while parsing
            return message

        await self.app(scope, capped, send)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n % 2**20 else f"{n // 2**20} MB"


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
        buf.getvalue(), media_type=XLSX, headers={"Content-Disposition": attachment(filename)}
    )


def attachment(filename: str) -> str:
    """Content-Disposition for any file name: an ASCII fallback for old clients, and the
    name itself as RFC 5987 `filename*` (HTTP headers are Latin-1 at best)."""
    fallback = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def clean_filename(name: str | None) -> str:
    """The uploaded file's own name (no folders, no control characters), as stored."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:FILENAME_MAX] or "upload"


def _limits(settings: Settings) -> SheetLimits:
    return SheetLimits(
        max_bytes=settings.import_max_bytes,
        max_rows=settings.import_max_rows,
        max_unzipped_bytes=settings.import_max_unzipped_bytes,
    )


def _parsers(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "sheet_parsers", None) is None:
        state.sheet_parsers = asyncio.Semaphore(PARALLEL_PARSES)
    return state.sheet_parsers


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


@router.post("", status_code=201, responses=responses(413))
async def upload(
    request: Request,
    state: StateDep,
    user: Importer,
    file: Annotated[UploadFile, File(description=".xlsx or .csv, one row per order line")],
    channel: UploadChannel = "import",
) -> JSONResponse:
    """Check the file, keep its rows, and start an ImportWorkflow for them."""
    filename = clean_filename(file.filename)
    async with state.sessions() as s:
        await check_webhook_channel(s, user, channel)
    limits = _limits(state.settings)
    # One upload in memory per parser slot (the form spooled it to disk); parsing is CPU
    # work: in a thread, so every other request keeps being answered.
    async with _parsers(request):
        content = await file.read(limits.max_bytes + 1)
        try:
            import_id = await _store(state, user, filename, channel, content, limits)
        except SheetError as err:
            raise HTTPException(err.status, f"{filename}: {err}") from None
        del content  # stored; the handler may yet wait seconds for a small import
    try:
        handle = await state.client.start_workflow(
            ImportWorkflow.run,
            ImportInput(import_id=import_id),
            id=f"import-{import_id}",
            # Its own queue: never behind the order backlog (docs/performance.md).
            task_queue=state.settings.resolved_import_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except Exception as err:
        if not temporal_outage(err):
            raise
        # Stored: the worker's recovery starts it once Temporal answers. Sending the file
        # again would import it twice, so the answer says where to follow this one.
        log.warning("import %s stored; its workflow did not start: %r", import_id, err)
        raise HTTPException(
            503,
            f"import {import_id} is stored and starts by itself once the workflow service "
            f"answers again: follow GET /imports/{import_id}; do not upload it again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    try:
        await asyncio.wait_for(handle.result(), WAIT_FOR_SMALL_IMPORTS_S)
        code = 201
    except TimeoutError:
        code = 202  # still running: follow GET /imports/{id}
    async with state.sessions() as s:
        done = await summary(s, await s.get_one(Import, import_id))
    return JSONResponse(status_code=code, content=done.model_dump(mode="json"))


async def _store(
    state: AppState, user: Caller, filename: str, channel: str, content: bytes, limits: SheetLimits
) -> int:
    """The import and its rows, stored as the sheet is read: a chunk of rows at a time, as
    multi-row INSERTs, each while a later chunk is parsed (in a thread), so no upload holds
    all its rows. One transaction: a sheet refused anywhere, even by its last
    row, stores nothing. Rows are grouped into orders by reference in PostgreSQL (the
    import's activity reads an order's rows by it); each order is checked as it is made."""
    parts = stream_sheet(filename, content, limits, INSERT_CHUNK)
    imp = Import(
        filename=filename,
        channel=channel,
        created_by=user.name,
        created_by_id=user.id,
        status="running",
        header=[],
        total_rows=0,
        total_orders=0,
    )
    parsed: deque[list[dict[str, Any]]] = deque()  # chunks read, not stored yet
    header: list[str] = []
    total = 0
    async with state.sessions() as s:
        try:
            while True:
                parsing = asyncio.ensure_future(asyncio.to_thread(_next_rows, parts))
                try:
                    # A chunk is stored while the one after the next is read: a sheet of
                    # two chunks or fewer is read (and checked) whole before a write.
                    if len(parsed) > 1:
                        await _insert_rows(s, imp, parsed.popleft())
                except BaseException:
                    await asyncio.wait([parsing])  # the thread is done with the sheet first
                    raise
                got = await parsing
                if got is None:
                    break
                header, rows = got
                total += len(rows)
                parsed.append(rows)
        finally:
            # (ValueError: a cancelled request's thread still reads it; closed when collected.)
            with contextlib.suppress(ValueError):
                parts.close()
        while parsed:
            await _insert_rows(s, imp, parsed.popleft())
        imp.header, imp.total_rows = header, total
        imp.total_orders = (
            await s.scalar(
                select(func.count(func.distinct(ImportRow.external_ref))).where(
                    ImportRow.import_id == imp.id
                )
            )
        ) or 0
        await s.commit()
    return imp.id


async def _insert_rows(s: AsyncSession, imp: Import, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT of a chunk; the import itself goes in before its first chunk."""
    if imp.id is None:
        s.add(imp)
        await s.flush()
    for r in rows:
        r["import_id"] = imp.id
    await s.execute(insert(ImportRow), rows)


def _next_rows(
    parts: Generator[Sheet],
) -> tuple[list[str], list[dict[str, Any]]] | None:
    """The next chunk of the sheet as import_rows values (None at its end). Each row's
    reference is the one its order is grouped by; a cell that cannot be read as its column
    is kept as the row's message (the activity refuses the row's order with it)."""
    part = next(parts, None)
    if part is None:
        return None
    return part.header, [
        {
            "import_id": None,  # set when stored
            "row_no": n,
            "external_ref": ref,
            "cells": cells,
            "status": "pending",
            "message": "; ".join(part.problems.get(n, [])),
            "order_id": None,
        }
        for n, cells, ref in zip(part.row_nos, part.rows, order_refs(part), strict=True)
    ]


async def _visible(session: AsyncSession, import_id: int, user: Caller) -> Import:
    """The import, if this caller may see it: its owner and admins; 404 for everyone else
    (the same answer as for no import, so ids of others' imports tell nothing)."""
    imp = await session.get(Import, import_id)
    if imp is None or (user.role != "admin" and not _owns(imp, user)):
        raise HTTPException(404, f"no import {import_id}")
    return imp


def _owns(imp: Import, user: Caller) -> bool:
    """By user id (names are not unique); by name only for imports made before ids were
    recorded whose name matched no single user (migration 0008)."""
    if imp.created_by_id is not None:
        return imp.created_by_id == user.id
    return imp.created_by == user.name


@router.get("/{import_id}")
async def get_import(import_id: DbId, session: SessionDep, user: Importer) -> ImportSummary:
    return await summary(session, await _visible(session, import_id, user))


@router.get("/{import_id}/result.xlsx")
async def result(import_id: DbId, session: SessionDep, user: Importer) -> Response:
    """The sheet as uploaded, plus what happened to each row and why."""
    imp = await _visible(session, import_id, user)
    # Written as a stream and read from PostgreSQL a chunk at a time: a 100,000-row import
    # never has all its rows in memory at once, as objects or as cells.
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("result")
    ws.append([*(_safe(h) for h in imp.header), "status", "order_id", "message"])
    rows = await session.stream(
        select(ImportRow.cells, ImportRow.status, ImportRow.order_id, ImportRow.message)
        .where(ImportRow.import_id == imp.id)
        .order_by(ImportRow.row_no)
        .execution_options(yield_per=RESULT_CHUNK)
    )
    async for cells, status, order_id, message in rows:
        ws.append([*(_safe(v) for v in cells), status, order_id, _safe(message)])
    return await asyncio.to_thread(_xlsx, wb, f"{imp.filename.rsplit('.', 1)[0]}-result.xlsx")


def _safe(value: Any) -> Any:
    """Never write a formula back into a sheet a person will open (header cells too), nor
    a character an .xlsx cannot hold."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
