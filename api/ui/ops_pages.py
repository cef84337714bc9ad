"""Console pages for ops and managers: stuck orders, alerts, imports, KPIs. Each reads and
acts through the functions of the API route (or the `orderflow stuck` command) it mirrors."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import BeforeValidator
from sqlalchemy import select

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.routes import alerts, imports, kpis
from api.ui.trends import trend_charts
from api.ui.web import PAGE_SIZE, ConsoleRoute, may, render
from db.kpis import KpiFilter, compute_kpis, weekly_trends
from db.models import Alert, Import
from domain.status import FINAL_STATUSES, OrderStatus
from domain.types import Code40, DbId, SaneDate
from services.stuck import find_stuck

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10_000)]
AGES = {"5m": 300, "30m": 1800, "2h": 7200, "1d": 86400, "3d": 3 * 86400}
OPEN_STATUSES = [s.value for s in OrderStatus if s not in FINAL_STATUSES]
BAR_MAX = 190  # px of the longest bar in a 400-wide chart (labels left, values right)
STUCK_PAGE = 10  # each row asks Temporal (and PostgreSQL) why: a shorter page than the others


@router.get("/stuck")
async def stuck(
    request: Request,
    state: StateDep,
    user: CurrentUser,
    status: str = "",
    older_than: str = "2h",
    page: PageNo = 1,
) -> Response:
    """The same query and reasons as `orderflow stuck`, a page at a time."""
    if status and status not in OPEN_STATUSES:
        raise HTTPException(422, f"status: {status!r} is not an open status")
    if older_than not in AGES:
        raise HTTPException(422, f"older_than: one of {', '.join(AGES)}")
    found = await find_stuck(
        state.sessions,
        state.client,
        state.settings,
        timedelta(seconds=AGES[older_than]),
        status or None,
        limit=STUCK_PAGE,
        offset=(page - 1) * STUCK_PAGE,
    )
    return render(
        request,
        "stuck.html",
        user,
        rows=found,
        more=len(found) == STUCK_PAGE,
        page=page,
        status=status,
        older_than=older_than,
        statuses=OPEN_STATUSES,
        ages=list(AGES),
    )


@router.get("/alerts")
async def alert_list(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    status: str = "open",
    page: PageNo = 1,
) -> Response:
    if status not in ("open", "acknowledged"):
        raise HTTPException(422, "status: one of open, acknowledged")
    q = (
        select(Alert)
        .where(Alert.status == status)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    found = [
        alerts.AlertOut.model_validate(a, from_attributes=True) for a in await session.scalars(q)
    ]
    return render(
        request,
        "alerts.html",
        user,
        rows=found[:PAGE_SIZE],
        more=len(found) > PAGE_SIZE,
        page=page,
        status=status,
        can_ack=may(user, "POST", "/ui/alerts/{alert_id}/ack"),
    )


@router.post("/alerts/{alert_id}/ack")
async def alert_ack(alert_id: DbId, session: SessionDep, user: CurrentUser) -> Response:
    """POST /alerts/{id}/ack's own function."""
    await alerts.ack(alert_id, session, user)
    return RedirectResponse("/ui/alerts", status_code=303)


async def _imports_page(
    request: Request,
    session: SessionDep,
    user: Caller,
    page: int,
    status_code: int = 200,
    problem: str | None = None,
    done: int | None = None,
) -> Response:
    q = select(Import).order_by(Import.id.desc()).offset((page - 1) * 10).limit(11)
    if user.role != "admin":  # as GET /imports/{id}: an import is its owner's (and admins')
        q = q.where(Import.created_by == user.name)
    found = list(await session.scalars(q))
    rows = [await imports.summary(session, imp) for imp in found[:10]]
    return render(
        request,
        "imports.html",
        user,
        status_code=status_code,
        rows=rows,
        more=len(found) > 10,
        page=page,
        problem=problem,
        done=done,
    )


@router.get("/imports")
async def import_list(
    request: Request, session: SessionDep, user: imports.Importer, page: PageNo = 1, done: int = 0
) -> Response:
    return await _imports_page(request, session, user, page, done=done or None)


@router.post("/imports")
async def import_upload(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: imports.Importer,
    file: Annotated[UploadFile, File()],
    channel: imports.UploadChannel = "import",
) -> Response:
    """POST /imports' own function: check the sheet, start its ImportWorkflow."""
    try:
        answer = await imports.upload(request, state, user, file, channel)
    except HTTPException as err:
        return await _imports_page(request, session, user, 1, err.status_code, str(err.detail))
    import_id = json.loads(bytes(answer.body))["id"]
    return RedirectResponse(f"/ui/imports?done={import_id}", status_code=303)


@router.get("/imports/{import_id}/result.xlsx")
async def import_result(import_id: DbId, session: SessionDep, user: imports.Importer) -> Response:
    return await imports.result(import_id, session, user)


def _blank(value: Any) -> Any:
    return value or None  # a form's empty field means "any"


# GET /kpis's own filter types (a date in range, a code), with empty form fields allowed.
Day = Annotated[SaneDate | None, BeforeValidator(_blank)]
Code = Annotated[Code40 | None, BeforeValidator(_blank)]


def _bars(rows: dict[str, float | None], unit: str) -> dict[str, Any]:
    """An inline SVG bar chart's geometry: one bar per row, scaled to the largest."""
    values = {k: v for k, v in rows.items() if v is not None}
    top = max(values.values(), default=0) or 1
    bars = [
        {"label": k, "value": v, "width": round(BAR_MAX * v / top, 1), "y": i * 26}
        for i, (k, v) in enumerate(values.items())
    ]
    return {"bars": bars, "height": max(len(bars) * 26, 26), "unit": unit}


KPI_CACHE_SECONDS = 60.0


async def _cached_kpis(request: Request, session: SessionDep, f: KpiFilter) -> dict[str, Any]:
    """GET /kpis's numbers, kept a minute per filter in this process: the SQL reads every
    order of the window, and a manager reloading the page need not pay for it each time."""
    cache: dict[KpiFilter, tuple[float, dict[str, Any]]] = request.app.state.__dict__.setdefault(
        "console_kpis", {}
    )
    now = time.monotonic()
    hit = cache.get(f)
    if hit is not None and now - hit[0] < KPI_CACHE_SECONDS:
        return hit[1]
    data = await compute_kpis(session, f)
    data["weekly"] = await weekly_trends(session, f)
    await session.commit()  # keep the rollup days this view built (db/kpis.py)
    data["as_of"] = datetime.now(UTC)
    if len(cache) >= 64:
        cache.clear()
    cache[f] = (now, data)
    return data


@router.get("/kpis")
async def kpi_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    from_: Annotated[Day, Query(alias="from")] = None,
    to: Day = None,
    channel: Code = None,
) -> Response:
    data = await _cached_kpis(request, session, kpis.kpi_filter(from_, to, channel, None))
    rates = {
        "first-pass": data["first_pass_rate"],
        "fill": data["fill_rate"],
        "on-time delivery": data["on_time_delivery_rate"],
        "backorder": data["backorder_rate"],
        "entry errors": data["entry_error_rate"],
    }
    steps = {k: v["median"] for k, v in data["step_seconds"].items()}
    waits = {k: v["median"] for k, v in data["approval_wait_seconds"].items()}
    query = request.url.query
    return render(
        request,
        "kpis.html",
        user,
        data=data,
        rates=_bars({k: (v * 100 if v is not None else None) for k, v in rates.items()}, "%"),
        steps=_bars(steps, "s"),
        waits=_bars(waits, "s"),
        trends=trend_charts(data["weekly"]),
        from_=from_ or "",
        to=to or "",
        channel=channel or "",
        xlsx="/ui/kpis.xlsx" + (f"?{query}" if query else ""),
    )


@router.get("/kpis.xlsx")
async def kpi_xlsx(
    session: SessionDep,
    user: CurrentUser,
    from_: Annotated[Day, Query(alias="from")] = None,
    to: Day = None,
    channel: Code = None,
) -> Response:
    """GET /kpis.xlsx's own function."""
    return await kpis.kpis_xlsx(kpis.kpi_filter(from_, to, channel, None), session, user)
