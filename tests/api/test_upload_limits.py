"""Uploads that cannot hurt: a hostile sheet is refused while the API keeps answering.

The API runs here as a real `orderflow api` process (uvicorn) on the test PostgreSQL and
Temporal, so its memory can be measured honestly (RSS of that process alone) and a sheet
parsed on its event loop would visibly stall `/health`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import psutil
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.auth import create_user
from db.session import SessionFactory
from orderflow.embedded import EmbeddedPostgres, free_port, venv_binary
from tests.conftest import running_api
from tests.conftest import test_settings as settings_for
from tests.domain.test_sheets import hostile_sheet, rewrite_sheet, xlsx
from tests.utils import Stack

MAX_UNZIPPED = 8 * 2**20


@dataclass
class ApiProcess:
    http: httpx.AsyncClient
    process: psutil.Process
    token: str

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    async def upload(self, content: bytes, name: str) -> httpx.Response:
        return await self.http.post(
            "/imports",
            files={"file": (name, content)},
            headers={"Authorization": f"Bearer {self.token}"},
        )


@pytest.fixture
async def api_process(
    pg: EmbeddedPostgres, temporal_env: WorkflowEnvironment, sessions: SessionFactory
) -> AsyncIterator[ApiProcess]:
    port = free_port()
    env = {
        **os.environ,
        "ORDERFLOW_DATABASE_URL": pg.url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "ORDERFLOW_TASK_QUEUE": f"tq-{uuid.uuid4().hex[:12]}",
        "ORDERFLOW_IMPORT_MAX_UNZIPPED_BYTES": str(MAX_UNZIPPED),
    }
    proc = await asyncio.create_subprocess_exec(
        venv_binary("orderflow"),
        "api",
        "--port",
        str(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with sessions() as s:
        token = await create_user(s, f"sales-{uuid.uuid4().hex[:6]}", "sales")
        await s.commit()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, "orderflow api exited during start-up"
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "orderflow api did not come up in 60 s"
                await asyncio.sleep(0.2)
            yield ApiProcess(http, psutil.Process(proc.pid), token)
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_a_hostile_sheet_is_refused_while_health_keeps_answering(api_process: ApiProcess):
    api = api_process
    # Warm up the parsing path (openpyxl, the thread pool) so the baseline is honest.
    warm = await api.upload(xlsx([]), "warm.xlsx")
    assert warm.status_code == 422 and "no rows" in warm.json()["detail"]
    baseline = api.rss()
    # Every one of its 2,000 rows is read before its last cell refuses it.
    content = hostile_sheet(rows=1999, last=["H-X", "C-1", "SKU-1", "=1+1"])
    assert len(content) < 48 * 1024, len(content)

    latencies: list[float] = []
    peak = baseline
    done = asyncio.Event()

    async def probe_health() -> None:
        while not done.is_set():
            started = time.monotonic()
            r = await api.http.get("/health")
            latencies.append(time.monotonic() - started)
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.05)  # pacing between probes, not synchronisation

    async def sample_rss() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, api.rss())
            await asyncio.sleep(0.01)

    probes = [asyncio.create_task(probe_health()), asyncio.create_task(sample_rss())]
    await asyncio.sleep(0.5)  # a few probes before the uploads
    quiet = max(latencies)
    started = time.monotonic()
    # Four at once: more than the API parses in parallel.
    answers = await asyncio.gather(*[api.upload(content, f"hostile-{i}.xlsx") for i in range(4)])
    upload_s = time.monotonic() - started
    await asyncio.sleep(0.2)
    done.set()
    await asyncio.gather(*probes)
    peak = max(peak, api.rss())

    for r in answers:
        assert r.status_code == 422, r.text
        assert "formulas are not accepted (paste values instead): cell(s) D2001" in r.text
    grown = (peak - baseline) / 2**20
    print(
        f"\nhostile sheet {len(content) / 1024:.1f} KiB x4: refused in {upload_s:.2f} s; "
        f"/health {len(latencies)} calls, max {max(latencies) * 1000:.0f} ms "
        f"(before the uploads {quiet * 1000:.0f} ms); "
        f"RSS {baseline / 2**20:.0f} MB -> peak {peak / 2**20:.0f} MB (+{grown:.0f} MB)"
    )
    assert len(latencies) >= 5
    assert max(latencies) < 1.0, latencies
    assert grown < 150


async def test_a_zip_bomb_is_refused_unopened(api_process: ApiProcess):
    api = api_process
    bomb = rewrite_sheet(
        xlsx([["B-1", "C-1", "SKU-1", 1]]), lambda xml: xml + b" " * 2 * MAX_UNZIPPED
    )
    baseline = api.rss()
    r = await api.upload(bomb, "bomb.xlsx")
    assert r.status_code == 413, r.text
    assert "unpacks to 16.0 MB; the limit is 8 MB" in r.json()["detail"]
    assert (api.rss() - baseline) / 2**20 < 50


async def test_a_sheet_past_the_row_cap_is_refused_with_413(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    settings = settings_for(pg, import_max_rows=1000)
    async with running_api(settings, sessions, client) as stack:
        r = await stack.http.post(
            "/imports",
            files={"file": ("hostile.xlsx", hostile_sheet(rows=2000))},
            headers=stack.auth("sales"),
        )
    assert r.status_code == 413, r.text
    assert "more than 1,000 rows; the limit is 1,000 rows per file" in r.json()["detail"]


async def test_an_upload_over_the_limit_is_refused_before_it_is_read(api_stack: Stack):
    """By its Content-Length before a byte of the form is parsed; without one (chunked),
    as soon as the body passes the limit: never spooled whole."""
    stack = api_stack
    limit = stack.settings.import_max_bytes
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.xlsx"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    sent = 0

    async def body(total: int) -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        chunk = b"x" * 2**20
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield b"\r\n--B--\r\n"

    headers = {**stack.auth("sales"), "Content-Type": "multipart/form-data; boundary=B"}
    declared = 200 * 2**20
    r = await stack.http.post(
        "/imports",
        content=body(declared),
        headers={**headers, "Content-Length": str(declared + len(head) + 9)},
    )
    assert r.status_code == 413, r.text
    assert "the upload is 200.0 MB; the limit is 32 MB per file" in r.json()["detail"]
    assert sent <= 2**20, f"{sent / 2**20:.0f} MB of the body was read"

    sent = 0  # chunked, no Content-Length: cut off just past the limit
    r = await stack.http.post("/imports", content=body(declared), headers=headers)
    assert r.status_code == 413, r.text
    assert "over the limit of 32 MB per file" in r.json()["detail"]
    assert sent <= limit + 2 * 2**20, f"{sent / 2**20:.0f} MB of the body was read"


async def test_a_content_length_of_thousands_of_digits_is_a_413_not_a_500(api_stack: Stack):
    stack = api_stack
    huge = "9" * 5000  # int() refuses more than 4,300 digits
    r = await stack.http.post(
        "/imports",
        content=b"x",
        headers={**stack.auth("sales"), "Content-Length": huge, "Content-Type": "text/csv"},
    )
    assert r.status_code == 413, r.text
    name = f"cl-{uuid.uuid4().hex[:6]}"
    assert (await stack.post("/channels", {"name": name})).status_code == 201
    r = await stack.http.post(
        f"/channels/{name}/orders", content=b"{}", headers={"Content-Length": huge}
    )
    assert r.status_code == 413, r.text


async def test_console_posts_are_capped_before_their_form_is_read(api_stack: Stack):
    """The console reads a POST's form before it knows who asks: a body over the cap (the
    import limit for /ui/imports, 1 MiB for every other form) is refused first, signed in
    or not."""
    stack = api_stack
    big = 2 * 2**20
    for path, declared in (("/ui/login", big), ("/ui/imports", 200 * 2**20)):
        r = await stack.http.post(
            path,
            content=b"token=x",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(declared),
            },
        )
        assert r.status_code == 413, (path, r.status_code, r.text[:200])

    sent = 0

    async def chunked() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"x" * 2**16
        while sent < big:
            sent += len(chunk)
            yield chunk

    r = await stack.http.post(
        "/ui/login",
        content=chunked(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # Cut off at the cap (413), or a moment earlier by the form parser's own 1 MB field
    # limit (400): either way never read whole.
    assert r.status_code in (400, 413), r.text[:200]
    assert sent <= 2**20 + 2 * 2**16, f"{sent} bytes of the body were read"
