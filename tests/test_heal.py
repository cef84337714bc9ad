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
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import select
from temporalio.client import Client

from api.auth import create_user
from api.main import create_app
from db.models import Order, Shipment
from db.session import (
    API_STATEMENT_TIMEOUT_S,
    SessionFactory,
    make_engine,
    make_session_factory,
)
from orderflow.embedded import EmbeddedPostgres, free_port
from services.config import Settings
from services.recovery import Recovery
from services.stuck import find_stuck
from services.temporal import API_TEMPORAL_RETRY, connect
from tests.heal_stack import UpStack, wait_for
from tests.utils import Stack
from workers.main import serve

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
async def proxied(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client, settings: Settings
) -> AsyncIterator[tuple[Proxy, httpx.AsyncClient]]:
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


@contextlib.asynccontextmanager
async def temporal_never_answered(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The API (admin token) with a lazy Temporal client that has never connected: its
    address is a port nobody listens on."""
    nobody = await connect(
        f"127.0.0.1:{free_port()}", "default", lazy=True, retry_config=API_TEMPORAL_RETRY
    )
    app = create_app(stack.settings, sessions=stack.sessions, client=nobody)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://orderflow", headers=stack.auth()
        ) as http:
            yield http


async def _stranded(http: httpx.AsyncClient, customer: str, sku: str, key: str) -> str:
    """An order stored while Temporal is down (503): its id."""
    t0 = time.monotonic()
    r = await http.post(
        "/orders",
        json={"customer_code": customer, "lines": [{"sku": sku, "quantity": 2}]},
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 503, r.text
    assert time.monotonic() - t0 < 10
    assert r.headers["Retry-After"]
    detail = r.json()["detail"]
    assert "stored but its pipeline could not start" in detail
    assert "Failed client connect" not in detail and "Temporal unreachable" not in detail
    return str(detail.split()[1])


async def test_temporal_down_reads_answer_writes_503_and_the_order_starts_itself(
    api_stack: Stack,
):
    stack = api_stack  # no worker yet: the one below starts the stored order by itself
    customer = await stack.customer()
    sku = await stack.product(stock=5)
    async with temporal_never_answered(stack) as http:
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["detail"]["down"] == "Temporal"
        order_id = await _stranded(http, customer, sku, uuid.uuid4().hex)
        read = await http.get(f"/orders/{order_id}")
        assert read.status_code == 200 and read.json()["status"] == "received"
    # No client retries. A fresh order is not shown to a person by `orderflow stuck`; the
    # worker's own recovery loop (a short sweep interval here) finds it and starts it.
    stuck = await find_stuck(stack.sessions, stack.client, stack.settings, timedelta(0), limit=5000)
    assert order_id not in {s.order_id for s in stuck}
    settings = stack.settings.model_copy(
        update={"recovery_grace_seconds": 0.0, "recovery_interval_seconds": 0.2}
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(serve(stack.client, stack.sessions, settings, stop))
    try:
        await stack.wait_status(order_id, "completed", within=60)
    finally:
        stop.set()
        await worker
    # Completed: a later sweep (another worker's, say) leaves it alone.
    assert order_id not in await Recovery(stack.sessions, stack.client, settings).sweep()
    assert await stack.count(Shipment, Shipment.order_id == order_id) == 1


async def test_every_write_that_needs_temporal_answers_503_when_it_never_answered(
    stack: Stack,
):
    """The lazy client's first connect fails: every route that needs Temporal answers 503
    with Retry-After (never a 500), reads answer from PostgreSQL."""
    from tests.api.test_imports import row, xlsx

    customer = await stack.customer()
    sku = await stack.product(stock=50)
    r = await stack.order(customer, [(sku, 1)])
    done = await stack.wait_status(r.json()["id"], "completed")
    tracking = done["shipments"][0]["tracking_number"]
    async with temporal_never_answered(stack) as http:
        key = uuid.uuid4().hex
        stranded = await _stranded(http, customer, sku, key)
        writes = {
            "replay": (
                "POST",
                "/orders",
                {"customer_code": customer, "lines": [{"sku": sku, "quantity": 2}]},
                {"Idempotency-Key": key},
            ),
            "decision": ("POST", f"/orders/{done['id']}/decision", {"decision": "approve"}, {}),
            "cancel": ("POST", f"/orders/{stranded}/cancel", {"reason": "x"}, {}),
            "amend": (
                "PATCH",
                f"/orders/{stranded}",
                {"requested_delivery_date": "2030-01-02"},
                {},
            ),
            "retry-shipping": ("POST", f"/orders/{done['id']}/retry-shipping", None, {}),
            "carrier-exception": (
                "POST",
                f"/orders/{done['id']}/carrier-exception",
                {"action": "wait"},
                {},
            ),
            "carrier event": ("POST", f"/shipments/{tracking}/events", {"status": "delivered"}, {}),
        }
        for what, (method, path, body, headers) in writes.items():
            r = await http.request(method, path, json=body, headers=headers, timeout=30)
            assert r.status_code == 503, (what, r.status_code, r.text)
            assert r.headers.get("Retry-After"), what
            assert "Failed client connect" not in r.text, (what, r.text)
        r = await http.post(
            "/imports",
            files={"file": ("o.xlsx", xlsx([row("T-1", customer, sku, 1)]))},
            data={"channel": f"imp-{uuid.uuid4().hex[:6]}"},
        )
        assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
        assert "is stored and starts by itself" in r.json()["detail"], r.text
        for path in (
            f"/orders/{done['id']}",
            f"/orders/{stranded}",
            "/orders",
            "/imports/template.xlsx",
        ):
            assert (await http.get(path)).status_code == 200, path


async def test_a_change_to_an_order_stored_during_an_outage_starts_it_and_applies(
    stack: Stack,
):
    """Cancel or amend an order stored while Temporal was down, before recovery started
    it: the change starts it (by its workflow id) and applies, never "it has finished"."""
    customer = await stack.customer()
    sku = await stack.product(stock=50)
    # Out of stock, so that the order to amend waits in backordered whoever starts it (the
    # change, or the worker's recovery loop meanwhile) and a date change is always allowed.
    short = await stack.product(stock=0)
    async with temporal_never_answered(stack) as http:
        to_cancel = await _stranded(http, customer, sku, uuid.uuid4().hex)
        to_amend = await _stranded(http, customer, short, uuid.uuid4().hex)
    r = await stack.post(f"/orders/{to_cancel}/cancel", {"reason": "changed my mind"})
    assert r.status_code in (200, 202), r.text
    await stack.wait_status(to_cancel, "cancelled")
    assert await stack.count(Shipment, Shipment.order_id == to_cancel) == 0
    r = await stack.http.patch(
        f"/orders/{to_amend}",
        json={"requested_delivery_date": "2030-01-02"},
        headers=stack.auth("sales"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["requested_delivery_date"] == "2030-01-02"
    await stack.wait_status(to_amend, "backordered")
    r = await stack.put(f"/inventory/{short}", {"on_hand": 10}, role="ops")
    assert r.status_code == 200, r.text
    await stack.wait_status(to_amend, "completed")


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
        futures = [pool.submit(post, key) for key in keys]
        # Killed once the API is answering the burst: its first answer is back, the other
        # requests are on the wire or queued behind them.
        wait(futures, timeout=60, return_when=FIRST_COMPLETED)
        pid, killed_at = up.kill("api")
        answers = [f.result() for f in futures]
    healed = up.heal_time("api", pid, killed_at)
    print(f"\nheal: api SIGKILL -> restarted and /health 200 in {healed:.1f} s")
    cut = [k for k, a in zip(keys, answers, strict=True) if a is None or a.status_code != 201]
    assert cut, "the kill cut no request short"
    assert len(cut) < len(keys), "no request was answered before the kill"
    answered = {k: a.json()["id"] for k, a in zip(keys, answers, strict=True) if k not in cut}
    # Half of the clients whose request was cut short send it again with the same key; the
    # others never do: what the API stored for them is started by the worker's recovery.
    for key in cut[::2]:
        r = up.order(customer, sku, key)
        assert r.status_code in (200, 201), r.text
        answered[key] = r.json()["id"]
    ids = asyncio.run(_orders_by_ref(up, keys))
    # Every answer names the one order stored for its key (a retry the one the cut request
    # stored, if it did); a request cut short and never sent again stored one or none.
    for key, order_id in answered.items():
        assert ids[key] == [order_id], (key, ids[key], order_id)
    flat = [v[0] for v in ids.values() if v]
    assert len(flat) == len(answered) + sum(1 for k in cut[1::2] if ids[k]), ids
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


# ---- `up`'s own stop and death: workers stop together, children die with `up` --------

SLOW_TO_STOP = """
import pathlib, signal, sys, time
def bye(*_):
    time.sleep(1.5)  # a graceful shutdown: activities in flight finish
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
pathlib.Path(sys.argv[1]).touch()
time.sleep(120)
"""


def test_workers_and_the_api_stop_at_the_same_time(tmp_path: Path):
    from orderflow.embedded import spawn
    from orderflow.supervisor import Child, Supervisor

    sup = Supervisor(lambda _: None)
    names = ["worker", "worker-2", "api"]
    for name in names:
        args = [sys.executable, "-c", SLOW_TO_STOP, str(tmp_path / f"{name}.ready")]
        sup.start(
            Child(
                name,
                lambda a=args, n=name: spawn(n, a, tmp_path / f"{n}.log"),
                tmp_path,
                10,
                group="app",
            )
        )
    wait_for(
        "the children to be ready",
        lambda: all((tmp_path / f"{n}.ready").exists() for n in names),
        30,
        0.05,
    )
    t0 = time.monotonic()
    sup.stop()
    took = time.monotonic() - t0
    assert not any(c.alive() for c in sup.children)
    assert [c.process.proc.returncode for c in sup.children] == [0, 0, 0]
    assert took < 2 * 1.5, f"stopped one after another: {took:.1f} s"


DIES_WITH_UP = """
import pathlib, sys, time
from orderflow.embedded import spawn
child = spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
              pathlib.Path(sys.argv[1]) / "sleeper.log")
pathlib.Path(sys.argv[1], "child.pid").write_text(str(child.proc.pid))
time.sleep(120)
"""


def test_children_die_with_up_when_it_is_killed(tmp_path: Path):
    import psutil

    up = subprocess.Popen([sys.executable, "-c", DIES_WITH_UP, str(tmp_path)])
    try:
        pid_file = tmp_path / "child.pid"
        wait_for("the child to start", pid_file.exists, 30, 0.05)
        child = psutil.Process(int(pid_file.read_text()))
        up.kill()  # SIGKILL: `up` stops nothing itself
        up.wait(10)
        wait_for(
            "the child to die with its parent",
            lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE,
            10,
            0.05,
        )
    finally:
        if up.poll() is None:
            up.kill()
        with contextlib.suppress(Exception):
            psutil.Process(int((tmp_path / "child.pid").read_text())).kill()


async def test_a_worker_started_while_temporal_is_down_connects_once_it_answers(
    temporal_env, settings, caplog: pytest.LogCaptureFixture
):
    """The SDK metrics runtime binds its port once: the attempts while Temporal is down do
    not each make one (the second would find the port taken and never connect)."""
    from workers.main import _connect_patiently

    host, port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)
    proxy = Proxy(host, int(port))
    proxy.refuse = True  # Temporal "down": connections are closed at once
    await proxy.start()
    metrics_port = free_port()
    worker_settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{proxy.port}"})
    stop = asyncio.Event()
    caplog.set_level("WARNING", logger="orderflow.worker")
    connecting = asyncio.create_task(
        _connect_patiently(worker_settings, f"127.0.0.1:{metrics_port}", stop)
    )
    try:
        deadline = time.monotonic() + 30
        while sum("Temporal not reachable" in r.message for r in caplog.records) < 2:
            assert time.monotonic() < deadline and not connecting.done(), caplog.text
            await asyncio.sleep(0.05)
        proxy.refuse = False  # Temporal is back
        client = await asyncio.wait_for(connecting, 30)
        assert client is not None
        await client.service_client.check_health()
        async with httpx.AsyncClient() as http:
            r = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert r.status_code == 200
    finally:
        stop.set()
        await proxy.close()
        if not connecting.done():
            connecting.cancel()
