"""`orderflow reconcile` and `orderflow count` as a person runs them: a table, and an exit
code a cron job or a script can act on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from rich.console import Console
from sqlalchemy import text

from api.main import create_app
from db import reconcile
from orderflow.books import show_report
from orderflow.embedded import EmbeddedPostgres, free_port
from services.config import Settings
from tests.utils import Stack


def _cli(pg: EmbeddedPostgres, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORDERFLOW_DATABASE_URL": pg.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "orderflow.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@asynccontextmanager
async def served(stack: Stack) -> AsyncIterator[str]:
    """The app under uvicorn in a thread (its own loop, engine and Temporal client)."""
    target = stack.client.service_client.config.target_host
    settings: Settings = stack.settings.model_copy(update={"temporal_address": target})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="count-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)


async def test_reconcile_exits_1_and_names_what_is_off(stack: Stack, pg: EmbeddedPostgres):
    sku = await stack.product(stock=40)
    clean = await asyncio.to_thread(_cli, pg, "reconcile", "--sku", sku)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "books balance: 1 SKU(s) checked" in clean.stdout

    async with stack.sessions() as s:
        await s.execute(text("UPDATE stock SET on_hand = 45 WHERE sku = :sku"), {"sku": sku})
        await s.commit()
    try:
        off = await asyncio.to_thread(_cli, pg, "reconcile", "--sku", sku, "--json")
        assert off.returncode == 1, off.stdout + off.stderr
        report = json.loads(off.stdout)
        assert [(p["check"], p["sku"], p["actual"]) for p in report["problems"]] == [
            ("ledger", sku, "45"),
            ("balance", sku, "45"),
        ]
        assert "+5 unit(s) no movement explains" in report["problems"][0]["detail"]
        # Without --json: the same report as a table a person reads.
        async with stack.sessions() as s:
            found = await reconcile.check(s, [sku])
        console = Console(record=True, width=200)
        show_report(found, console)
        table = console.export_text()
        assert "books do not balance: 2 difference(s) on " + sku in table
        assert "on hand 45 + shipped 0 = 45, but received 40" in table
    finally:
        async with stack.sessions() as s:
            await s.execute(text("UPDATE stock SET on_hand = 40 WHERE sku = :sku"), {"sku": sku})
            await s.commit()


async def test_count_books_a_sheet_once(stack: Stack, pg: EmbeddedPostgres, tmp_path: Path):
    sku = await stack.product(stock=10)
    sheet = tmp_path / "count.csv"
    sheet.write_text(f"sku,counted,bin_location\n{sku},7,A-01-01\n")
    args = ("count", str(sheet), "--reason", "monthly count", "--token", stack.tokens["ops"])
    async with served(stack) as api:
        first = await asyncio.to_thread(_cli, pg, *args, "--api", api)
        again = await asyncio.to_thread(_cli, pg, *args, "--api", api)
        refused = await asyncio.to_thread(
            _cli, pg, *args, "--api", api, "--token", stack.tokens["sales"]
        )
    assert first.returncode == 1, first.stdout + first.stderr  # stock was off
    assert "1 difference(s)" in first.stdout and "adjusted" in first.stdout
    assert "counted before: nothing moved now" in again.stdout
    assert refused.returncode == 2 and "403" in refused.stdout
    assert (await stack.get(f"/inventory/{sku}")).json()["on_hand"] == 7
