"""A stack that heals itself: 503 during outages (in-process, against a PostgreSQL behind a
proxy that can freeze or drop it, and a Temporal address nobody answers), stranded orders
started by the worker's recovery, and `orderflow up` with its children killed by SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import select

from orderflow.api.auth import create_user
from orderflow.api.main import create_app
from orderflow.db.models import Order, Shipment
from orderflow.db.session import API_STATEMENT_TIMEOUT_S, make_engine, make_session_factory
from orderflow.embedded import EmbeddedPostgres, free_port
from orderflow.ops import find_stuck
from orderflow.recovery import Recovery
from orderflow.temporal_client import API_TEMPORAL_RETRY, connect
from tests.heal_stack import UpStack, wait_for
from tests.utils import Stack

# ---- PostgreSQL down or frozen: 503 from every route, quickly, and back by itself ------


class Proxy:
    """TCP in front of PostgreSQL that can freeze (hold every byte, as a stopped server or
    a partition would) or drop (close and refuse connections, as a dead server would)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refuse = False
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_w]
        await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                await self.flowing.wait()
                dst.write(data)
                await dst.drain()
        dst.close()

    def drop(self) -> None:
        self.refuse = True
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def close(self) -> None:
        self.flowing.set()
        self.drop()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxied(pg: EmbeddedPostgres, sessions, client, settings) -> AsyncIterator:  # type: ignore[no-untyped-def]
    proxy = Proxy(pg.host, pg.port)
    await proxy.start()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/orderflow"
    engine = make_engine(
        url, pool_size=4, max_overflow=4, statement_timeout_s=API_STATEMENT_TIMEOUT_S
    )
    app = create_app(settings, sessions=make_session_factory(engine), client=client)
    async with sessions() as s:
        token = await create_user(s, f"admin-{uuid.uuid4().hex[:6]}", "admin")
        await s.commit()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app),
            base_url="http://orderflow",
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            yield proxy, http
    await engine.dispose()
    await proxy.close()


ROUTES = [
    ("GET", "/health"),
    ("GET", "/orders"),
    ("GET", "/orders/SO-0000001"),
    ("GET", "/customers/C-GLD-1"),
    ("GET", "/inventory/WID-001"),
    ("GET", "/kpis"),
    ("GET", "/alerts"),
    ("GET", "/metrics"),
    ("POST", "/orders"),
]
ORDER = {"customer_code": "C-GLD-1", "lines": [{"sku": "WID-001", "quantity": 1}]}


async def _all_routes(http: httpx.AsyncClient) -> list[tuple[str, httpx.Response, float]]:
    async def one(method: str, path: str) -> tuple[str, httpx.Response, float]:
        t0 = time.monotonic()
        body = ORDER if method == "POST" else None
        r = await http.request(method, path, json=body, timeout=60)
        return f"{method} {path}", r, time.monotonic() - t0

    return list(await asyncio.gather(*(one(m, p) for m, p in ROUTES)))


def _assert_outage(results: list[tuple[str, httpx.Response, float]], part: str) -> None:
    for route, r, took in results:
        assert r.status_code == 503, (route, r.status_code, r.text)
        assert r.headers.get("Retry-After"), route
        assert took < 10, (route, took)
        detail = r.json()["detail"]
        text = json.dumps(detail)
        assert part in text, (route, text)
        assert "\n" not in text and "psycopg" not in text and "Error" not in text, text


async def test_postgres_frozen_or_down_every_route_503_within_seconds_then_recovers(proxied):
    proxy, http = proxied
    assert (await http.get("/health")).status_code == 200
    proxy.flowing.clear()  # frozen: connections stay open, nothing comes back
    _assert_outage(await _all_routes(http), "PostgreSQL")
    proxy.flowing.set()
    wait = time.monotonic() + 20
    while (await http.get("/health")).status_code != 200:
        assert time.monotonic() < wait, "the API did not recover after the freeze"
    assert (await http.get("/orders")).status_code == 200
    proxy.drop()  # down: every connection closed, new ones refused
    _assert_outage(await _all_routes(http), "PostgreSQL")
    proxy.refuse = False
    assert (await http.get("/health")).status_code == 200
    for route, r, _ in await _all_routes(http):  # no poisoned connection is handed out
        assert r.status_code < 500, (route, r.text)


# ---- Temporal down: reads answer, writes 503, the stored order starts by itself --------


async def test_temporal_down_reads_answer_writes_503_and_the_order_starts_itself(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=5)
    nobody = await connect(
        f"127.0.0.1:{free_port()}", "default", lazy=True, retry_config=API_TEMPORAL_RETRY
    )
    app = create_app(stack.settings, sessions=stack.sessions, client=nobody)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://orderflow", headers=stack.auth()
        ) as http:
            health = await http.get("/health")
            assert health.status_code == 503 and health.json()["detail"]["down"] == "Temporal"
            t0 = time.monotonic()
            r = await http.post(
                "/orders",
                json={"customer_code": customer, "lines": [{"sku": sku, "quantity": 2}]},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert r.status_code == 503, r.text
            assert time.monotonic() - t0 < 10
            assert r.headers["Retry-After"]
            assert "stored but its pipeline could not start" in r.json()["detail"]
            order_id = r.json()["detail"].split()[1]
            read = await http.get(f"/orders/{order_id}")
            assert read.status_code == 200 and read.json()["status"] == "received"
    # No client retries. The worker's recovery sweep finds it and starts it; a fresh
    # order is not shown to a person by `orderflow stuck` meanwhile.
    stuck = await find_stuck(stack.sessions, stack.client, stack.settings, timedelta(0), limit=5000)
    assert order_id not in {s.order_id for s in stuck}
    settings = stack.settings.model_copy(update={"recovery_grace_seconds": 0.0})
    recovery = Recovery(stack.sessions, stack.client, settings)
    assert order_id in await recovery.sweep()
    await stack.wait_status(order_id, "completed", within=60)
    # Completed: a later sweep (another worker's, say) leaves it alone.
    assert order_id not in await Recovery(stack.sessions, stack.client, settings).sweep()
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 1


# ---- `orderflow up` with its children killed ----------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    stack = UpStack(
        Path(tmp_path_factory.mktemp("heal")) / "home",
        ORDERFLOW_CARRIER_DELAY_SECONDS="1",
        ORDERFLOW_RECOVERY_GRACE_SECONDS="2",
        ORDERFLOW_RECOVERY_INTERVAL_SECONDS="1",
    )
    stack.start()
    yield stack
    stack.stop()


@pytest.mark.timeout(300)
def test_one_minute_soak_has_no_errors_and_accounts_for_every_order(up: UpStack, tmp_path: Path):
    out = tmp_path / "soak.json"
    env = {**up.env, "ORDERFLOW_API_PORT": str(up.ports["api"])}
    ran = subprocess.run(
        [sys.executable, "-m", "orderflow.cli", "bench", "--soak", "1m", "--rate", "2"]
        + ["--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert report["orders"] >= 100
    soak = report["soak"]
    assert soak["accounted_for"] == report["orders"]
    assert set(soak["slope_mb_per_hour"]) >= {"worker", "api"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["temporal", "postgres"])
def test_server_killed_with_orders_in_flight_heals_and_completes_once(up: UpStack, victim: str):
    customer, sku = up.setup()
    ids = up.orders(customer, sku, 15)
    up.wait_some(ids, "packed")
    pid, killed_at = up.kill(victim)
    healed = up.heal_time(victim, pid, killed_at)
    up.wait_all_completed(ids)
    done = time.monotonic() - killed_at
    print(f"\nheal: {victim} SIGKILL -> /health 200 in {healed:.1f} s, orders done in {done:.1f} s")
    up.assert_exactly_once(ids, sku)
    assert f"{victim} killed by SIGKILL" in up.supervisor_log()
    assert f"{victim} is back" in up.supervisor_log()


@pytest.mark.timeout(300)
def test_api_killed_mid_request_heals_and_no_order_is_lost_or_doubled(up: UpStack):
    customer, sku = up.setup()
    keys = [uuid.uuid4().hex for _ in range(16)]

    def post(key: str) -> httpx.Response | None:
        try:
            return up.order(customer, sku, key)
        except httpx.HTTPError:
            return None

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(post, keys)
        time.sleep(0.05)  # some requests are on the wire  # noqa: ASYNC251
        pid, killed_at = up.kill("api")
        answers = list(answers)
    healed = up.heal_time("api", pid, killed_at)
    print(f"\nheal: api SIGKILL -> restarted and /health 200 in {healed:.1f} s")
    cut = [k for k, a in zip(keys, answers, strict=True) if a is None or a.status_code != 201]
    assert cut, "the kill cut no request short"
    # Half of the clients whose request was cut short send it again with the same key; the
    # others never do: what the API stored for them is started by the worker's recovery.
    for key in cut[::2]:
        r = up.order(customer, sku, key)
        assert r.status_code in (200, 201), r.text
    ids = asyncio.run(_orders_by_ref(up, keys))
    assert all(len(v) <= 1 for v in ids.values()), ids  # never two orders for one key
    flat = [v[0] for v in ids.values() if v]
    assert len(flat) >= len(keys) - len(cut[1::2])
    up.wait_all_completed(flat)
    up.assert_exactly_once(flat, sku)


async def _orders_by_ref(up: UpStack, refs: list[str]) -> dict[str, list[str]]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{up.ports['pg']}/orderflow"
    engine = make_engine(url, pool_size=1)
    try:
        async with make_session_factory(engine)() as s:
            rows = (
                await s.execute(
                    select(Order.external_ref, Order.id).where(Order.external_ref.in_(refs))
                )
            ).all()
    finally:
        await engine.dispose()
    found: dict[str, list[str]] = {r: [] for r in refs}
    for ref, order_id in rows:
        found[ref].append(order_id)
    return found


@pytest.mark.timeout(300)
def test_a_child_that_keeps_crashing_stops_the_stack_naming_it(up: UpStack):
    """Runs last: it ends the module's stack."""
    assert up.proc is not None
    kills = 0
    while up.proc.poll() is None and kills < 8:
        pid = wait_for(
            "a worker to kill", lambda: up.pid("worker") or up.proc.poll() is not None, 60
        )
        if up.proc.poll() is not None:
            break
        with contextlib.suppress(AssertionError, ProcessLookupError):
            up.kill("worker")
            kills += 1
        wait_for("the worker to go", lambda p=pid: up.pid("worker") != p, 30)
    assert up.proc.wait(60) == 1
    log = up.log.read_text()
    assert "worker crashed 5 times in 2 minutes" in log
    assert str(up.home / "worker.log") in log.replace("\n", "")
    assert "stopped; data kept in" in log
