"""GET /kpis (JSON) and GET /kpis.xlsx (the same, for a spreadsheet)."""

from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from openpyxl import Workbook

from api.deps import CurrentUser, SessionDep
from db.kpis import KpiFilter, compute_kpis
from domain.types import Code40, SaneDate

router = APIRouter(tags=["kpis"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def kpi_filter(
    from_: Annotated[SaneDate | None, Query(alias="from", description="first day (UTC)")] = None,
    to: Annotated[SaneDate | None, Query(description="last day, inclusive (UTC)")] = None,
    channel: Code40 | None = None,
    customer_code: Code40 | None = None,
) -> KpiFilter:
    return KpiFilter(from_, to, channel, customer_code)


Filter = Annotated[KpiFilter, Depends(kpi_filter)]


async def _kpis(session: SessionDep, f: KpiFilter) -> dict[str, Any]:
    data = await compute_kpis(session, f)
    await session.commit()  # keeps the rollup days the read built (db/kpis.py)
    return data


@router.get("/kpis")
async def kpis(f: Filter, session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    return await _kpis(session, f)


@router.get("/kpis.xlsx")
async def kpis_xlsx(f: Filter, session: SessionDep, _: CurrentUser) -> Response:
    data = await _kpis(session, f)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "KPIs"
    ws.append(["KPI", "value"])
    for key, value in data.items():
        if not isinstance(value, dict):
            ws.append([key, value])
    ws.append(["end_to_end_median_seconds", data["end_to_end_seconds"]["median"]])
    ws.append(["end_to_end_p95_seconds", data["end_to_end_seconds"]["p95"]])
    for title, key in (("Step times", "step_seconds"), ("Approval waits", "approval_wait_seconds")):
        sheet = wb.create_sheet(title)
        sheet.append(["", "count", "median seconds", "p95 seconds"])
        for name, row in data[key].items():
            sheet.append([name, row["count"], row["median"], row["p95"]])
    buf = io.BytesIO()
    wb.save(buf)
    return Response(
        buf.getvalue(),
        media_type=XLSX,
        headers={"Content-Disposition": 'attachment; filename="kpis.xlsx"'},
    )
