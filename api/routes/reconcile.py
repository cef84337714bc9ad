"""Books against shelves: the reconciliation report, a run now, and cycle counts."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import SessionDep, SettingsDep, TemporalDep, require
from api.errors import responses
from db import reconcile
from domain.alerts import Alert
from domain.callers import Caller
from domain.reconcile import (
    CheckRequest,
    CountId,
    CountIn,
    CountOut,
    Reason,
    Report,
    read_count_sheet,
    report_alert,
)
from domain.sheets import SheetError, SheetLimits
from domain.types import Code40
from services.config import Settings
from workflows.alert import AlertWorkflow, alert_workflow_id

log = logging.getLogger("orderflow.api")
router = APIRouter(tags=["reconcile"], responses=responses(404))

Ops = Annotated[Caller, Depends(require("ops"))]


class RunOut(Report):
    run_id: str


@router.get("/reconcile")
async def get_report(
    session: SessionDep,
    settings: SettingsDep,
    _: Ops,
    sku: Annotated[list[Code40], Query(max_length=1000)] = [],  # noqa: B006 - FastAPI's idiom
) -> Report:
    """The books against the shelves now (reads only, raises nothing): every SKU, or these
    SKUs and the orders holding them."""
    return await reconcile.check(
        session, sku, invoice_grace_seconds=settings.reconcile_invoice_grace_seconds
    )


@router.post("/reconcile")
async def run_now(
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    _: Ops,
    body: CheckRequest | None = None,
) -> RunOut:
    """Reconcile now, as the nightly run does: a difference raises this run's one alert."""
    run_id = f"reconcile-now-{uuid.uuid4().hex[:12]}"
    report = await reconcile.check(
        session,
        (body or CheckRequest()).skus,
        invoice_grace_seconds=settings.reconcile_invoice_grace_seconds,
    )
    if not report.ok:
        try:
            await _raise(client, settings, report_alert(report, run_id))
        except RPCError as err:
            raise HTTPException(
                503, f"{report.summary()}; its alert could not be raised ({err.message})"
            ) from None
    return RunOut(run_id=run_id, **report.model_dump())


@router.post(
    "/stock-counts",
    responses={201: {"description": "counted now"}, 200: {"description": "counted before"}},
)
async def count(
    body: CountIn,
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: Ops,
    idempotency_key: Annotated[CountId | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """A cycle count: each difference becomes an audited adjustment, once per count id
    (`count_id` or the Idempotency-Key header); the same count again answers 200 and moves
    nothing. A difference raises an alert."""
    return await _book(session, client, settings, user, body, idempotency_key)


@router.post(
    "/stock-counts/sheet",
    responses={201: {"description": "counted now"}, **responses(413)},
)
async def count_sheet(
    session: SessionDep,
    client: TemporalDep,
    settings: SettingsDep,
    user: Ops,
    file: Annotated[UploadFile, File(description=".xlsx or .csv: sku, counted, bin_location")],
    reason: Annotated[Reason, Form()],
    count_id: Annotated[CountId | None, Form()] = None,
    idempotency_key: Annotated[CountId | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """A cycle count from a sheet, as POST /stock-counts."""
    limits = SheetLimits(max_bytes=settings.import_max_bytes, max_rows=settings.import_max_rows)
    content = await file.read(limits.max_bytes + 1)
    name = (file.filename or "count.csv")[:300]
    try:
        lines = await asyncio.to_thread(read_count_sheet, name, content, limits)
    except SheetError as err:
        raise HTTPException(err.status, f"{name}: {err}") from None
    try:
        body = CountIn(counts=lines, reason=reason, count_id=count_id)
    except ValueError as err:
        raise HTTPException(422, f"{name}: {err}") from None
    return await _book(session, client, settings, user, body, idempotency_key)


@router.get("/stock-counts/{count_id}")
async def get_count(count_id: CountId, session: SessionDep, _: Ops) -> CountOut:
    found = await reconcile.find_count(session, count_id)
    if found is None:
        raise HTTPException(404, f"no stock count {count_id}")
    return found


async def _book(
    session: SessionDep,
    client: Client,
    settings: Settings,
    user: Caller,
    body: CountIn,
    header_key: str | None,
) -> JSONResponse:
    if header_key and body.count_id and header_key != body.count_id:
        raise HTTPException(
            422, "count_id and the Idempotency-Key header differ; send one, or the same in both"
        )
    count_id = header_key or body.count_id or f"count-{uuid.uuid4().hex}"
    try:
        out, fresh = await reconcile.apply_count(session, count_id, body, user.name)
    except reconcile.BadCount as err:
        raise HTTPException(422, str(err)) from None
    except reconcile.CountConflict as err:
        raise HTTPException(422, str(err)) from None
    await session.commit()
    if out.differences:
        # Again on a repeat too: if the first answer was lost before its alert started, the
        # repeat raises it; the alerts table stores one per count whatever happens.
        try:
            await _alert(client, settings, out)
        except RPCError as err:
            log.warning("count %s booked, alert not raised: %s", out.id, err)
            raise HTTPException(
                503,
                f"count {out.id} is booked, but its alert could not be raised ({err.message}); "
                "send the same count again to raise it",
            ) from None
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if fresh else 200)


async def _alert(client: Client, settings: Settings, out: CountOut) -> None:
    """One alert per count with differences (its id is the dedup key)."""
    off = [ln for ln in out.lines if ln.status in ("adjusted", "refused")]
    await _raise(
        client,
        settings,
        Alert(
            dedup_key=f"stock-count:{out.id}",
            kind="stock_count_difference",
            severity="warning",
            summary=f"cycle count {out.id} by {out.counted_by}: {len(off)} difference(s) "
            f"({out.reason})",
            detail="\n".join(
                f"{ln.sku}: on hand {ln.on_hand_before}, counted {ln.counted} "
                f"({ln.difference:+d}) {ln.status}{': ' + ln.note if ln.note else ''}"
                for ln in off
            ),
        ),
    )


async def _raise(client: Client, settings: Settings, alert: Alert) -> None:
    """Start the alert's AlertWorkflow (stored once per dedup key, then delivered)."""
    try:
        await client.start_workflow(
            AlertWorkflow.run,
            alert,
            id=alert_workflow_id(alert.dedup_key),
            task_queue=settings.task_queue,
        )
    except WorkflowAlreadyStartedError:
        pass
