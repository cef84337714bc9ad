"""`orderflow bench --import-rows N`: one sheet of N rows (20 lines per order) uploaded to a
running stack, timed from the upload until every order is created and its workflow started
(no row pending), with the API's and the worker's peak RSS over that time; then the result
sheet is downloaded and checked row by row."""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psutil
from openpyxl import Workbook, load_workbook

from bench.driver import _cpu_seconds, _stack_processes
from domain.sheets import COLUMNS

LINES_PER_ORDER = 20
SKUS = 20
POLL_S = 0.25


def write_sheet(path: str, rows: int, customer: str, skus: list[str], run_id: str) -> int:
    """An .xlsx of `rows` order lines, written as a stream; returns the number of orders."""
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("orders")
    ws.append(list(COLUMNS))
    for n in range(rows):
        order = n // LINES_PER_ORDER
        ws.append(
            [
                f"IMP-{run_id}-{order:06d}",
                customer,
                skus[n % LINES_PER_ORDER % len(skus)],
                1 + n % 7,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ]
        )
    wb.save(path)
    return (rows + LINES_PER_ORDER - 1) // LINES_PER_ORDER


async def _setup(http: httpx.AsyncClient, run_id: str) -> tuple[str, list[str]]:
    customer = f"IMPB-{run_id}"
    r = await http.post(
        "/customers",
        json={
            "code": customer,
            "name": "Import bench",
            "tier": "gold",
            "credit_limit": "999999999999.00",
            "address": {
                "line1": "1 Bench Road",
                "city": "Shanghai",
                "postal_code": "200000",
                "country": "CN",
            },
        },
    )
    r.raise_for_status()
    skus = [f"IMPB-{run_id}-{i:02d}" for i in range(SKUS)]
    for sku in skus:
        r = await http.post(
            "/products",
            json={"sku": sku, "name": sku, "unit_price": "10.00", "floor_price": "5.00"},
        )
        r.raise_for_status()
        r = await http.put(f"/inventory/{sku}", json={"on_hand": 100_000_000})
        r.raise_for_status()
    return customer, skus


async def _peak_rss(api: str, stop: asyncio.Event, peak: dict[str, float]) -> None:
    procs = _stack_processes(api)
    while not stop.is_set():
        for role in ("worker", "api"):
            total = 0.0
            for p in procs.get(role, []):
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss / 2**20
            peak[role] = round(max(peak.get(role, 0.0), total), 1)
        await asyncio.sleep(0.5)


def check_result(content: bytes, rows: int, orders: int) -> dict[str, Any]:
    """The result sheet: one row per sheet row, in order, each created with its order id."""
    wb = load_workbook(io.BytesIO(content), read_only=True)
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = list(next(it))
    status_col, order_col = header.index("status"), header.index("order_id")
    seen = 0
    statuses: dict[str, int] = {}
    order_ids: set[str] = set()
    refs_to_order: dict[str, str] = {}
    wrong = 0
    for values in it:
        seen += 1
        statuses[str(values[status_col])] = statuses.get(str(values[status_col]), 0) + 1
        order_id = str(values[order_col])
        order_ids.add(order_id)
        if refs_to_order.setdefault(str(values[0]), order_id) != order_id:
            wrong += 1  # two orders for one reference
    wb.close()
    return {
        "rows": seen,
        "statuses": statuses,
        "distinct_orders": len(order_ids),
        "right": seen == rows
        and statuses == {"created": rows}
        and len(order_ids) == orders
        and wrong == 0,
    }


def _cpu_between(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    return {role: round(end[role] - start.get(role, 0.0), 2) for role in sorted(end)}


async def bench_import(
    api: str, admin: str, rows: int, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6].upper()
    headers = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=600) as http:
        customer, skus = await _setup(http, run_id)
        with tempfile.NamedTemporaryFile(suffix=".xlsx") as f:
            t0 = time.perf_counter()
            orders = write_sheet(f.name, rows, customer, skus, run_id)
            progress(f"sheet: {rows:,} rows, {orders:,} orders ({time.perf_counter() - t0:.1f} s)")
            content = open(f.name, "rb").read()  # noqa: ASYNC230, SIM115 (the bench's own file)
        peak: dict[str, float] = {}
        stop = asyncio.Event()
        sampler = asyncio.create_task(_peak_rss(api, stop, peak))
        cpu_start = _cpu_seconds(_stack_processes(api))
        started = time.perf_counter()
        r = await http.post(
            "/imports",
            files={"file": (f"bench-{run_id}.xlsx", content, "application/octet-stream")},
            data={"channel": "import"},
        )
        r.raise_for_status()
        answered = time.perf_counter() - started
        cpu_answered = _cpu_seconds(_stack_processes(api))
        summary = r.json()
        while summary["rows_pending"] and summary["status"] == "running":
            await asyncio.sleep(POLL_S)
            got = await http.get(f"/imports/{summary['id']}")
            got.raise_for_status()
            summary = got.json()
        all_started = time.perf_counter() - started
        cpu_end = _cpu_seconds(_stack_processes(api))
        stop.set()
        await sampler
        t1 = time.perf_counter()
        res = await http.get(f"/imports/{summary['id']}/result.xlsx")
        res.raise_for_status()
        result_s = time.perf_counter() - t1
    result = check_result(res.content, rows, orders)
    errors = {} if result["right"] else {"result_sheet_wrong": 1}
    if summary["orders_created"] != orders:
        errors["orders_not_created"] = orders - summary["orders_created"]
    return {
        "kind": "import",
        "rows": rows,
        "orders": orders,
        "file_mb": round(len(content) / 2**20, 2),
        "upload_answered_s": round(answered, 2),
        "all_started_s": round(all_started, 2),
        "orders_started_per_second": round(orders / all_started, 1),
        "result_sheet_s": round(result_s, 2),
        "peak_rss_mb": peak,
        # CPU seconds by process (PostgreSQL: its processes found at each end), from the upload
        # until it was answered, and until every order was started: steadier than the
        # times above on a shared machine.
        "upload_cpu_s": _cpu_between(cpu_start, cpu_answered),
        "cpu_s": _cpu_between(cpu_start, cpu_end),
        "summary": summary,
        "result_sheet": result,
        "errors": errors,
    }
