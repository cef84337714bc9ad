"""`orderflow reconcile` and `orderflow count`: the books against the shelves, for a person
at a terminal (docs/reconcile.md)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from domain.reconcile import Report
from services.config import Settings


async def read_report(settings: Settings, skus: list[str]) -> Report:
    """The reconciliation report, read straight from PostgreSQL (works with the API down)."""
    from db import reconcile
    from db.session import make_engine, make_session_factory

    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as s, s.begin():
            return await reconcile.check(
                s, skus, invoice_grace_seconds=settings.reconcile_invoice_grace_seconds
            )
    finally:
        await engine.dispose()


def show_report(report: Report, out: Console) -> None:
    if report.ok:
        out.print(f"[green]{report.summary()}[/green]")
        return
    table = Table(title=report.summary())
    for col in ("check", "SKU / ref", "expected", "actual", "what is off"):
        table.add_column(col, overflow="fold")
    for p in report.problems:
        table.add_row(p.check, p.sku or p.ref or "", p.expected, p.actual, p.detail)
    out.print(table)
    if report.problems_total > len(report.problems):
        out.print(f"… and {report.problems_total - len(report.problems)} more (GET /reconcile)")


def reconcile_command(settings: Settings, skus: list[str], as_json: bool) -> int:
    """Print the report; the exit code: 0 when the books balance, 1 when something is off."""
    report = asyncio.run(read_report(settings, skus))
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        show_report(report, Console(width=160))
    return 0 if report.ok else 1


def sheet_count_id(content: bytes) -> str:
    """The same file counted twice is one count: its id is its content's fingerprint."""
    return "sheet-" + hashlib.sha256(content).hexdigest()[:40]


def count_command(
    http: httpx.Client, file: Path, reason: str, count_id: str | None, out: Console
) -> int:
    """Send a count sheet to POST /stock-counts/sheet and print what it did; 1 when it was
    refused or found differences, 0 when every line matched."""
    content = file.read_bytes()
    r = http.post(
        "/stock-counts/sheet",
        files={"file": (file.name, content)},
        data={"reason": reason},
        headers={"Idempotency-Key": count_id or sheet_count_id(content)},
    )
    if r.status_code >= 400:
        out.print(f"[red]{r.status_code}: {r.json().get('detail')}[/red]")
        return 2
    body = r.json()
    again = " (counted before: nothing moved now)" if r.status_code == 200 else ""
    table = Table(title=f"count {body['id']}: {body['differences']} difference(s){again}")
    for col in ("SKU", "bin", "before", "counted", "after", "diff", "status", "note"):
        table.add_column(col, overflow="fold")
    for ln in body["lines"]:
        table.add_row(
            ln["sku"],
            ln["bin_location"] or "",
            str(ln["on_hand_before"]),
            str(ln["counted"]),
            str(ln["on_hand_after"]),
            f"{ln['difference']:+d}",
            ln["status"],
            ln["note"],
        )
    out.print(table)
    return 1 if body["differences"] else 0
