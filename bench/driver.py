"""`orderflow bench`: drive a running stack through its public API, as channels, approvers
and the carrier would, and compare with bare Temporal skeletons on the same server.

Measured: completed orders per second (sustained, between the 10th and 90th percentile of
completions), intake latency (client side, POST /orders), end-to-end time of touchless
orders, errors by kind, peak RSS of the worker and API processes, and with --baseline the
same throughput for a skeleton workflow of no-op activities and one of no-op local
activities, one per pipeline step, started the same way in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench.skeleton import ActivitySkeleton, LocalSkeleton, noop
from services.config import Settings
from workers.main import precompile_workflows

POLL_SECONDS = 0.25
# The catch-all look (every order that changed lately, whatever its status: final ones,
# backorders) is made this often; the orders the bench acts on (invoiced, awaiting approval)
# are looked for at every poll. An order's end is stamped from its `updated_at`, not from
# when the bench saw it, so a slower catch-all changes no latency.
FULL_POLL_SECONDS = 1.0
PIPELINE_STEPS = 9  # validate+route, reserve, pick, pack, book, ship, invoice, deliver, complete
MIXES = {
    "realistic": {"touchless": 0.80, "approval": 0.10, "invalid": 0.05, "short": 0.05},
    "touchless": {"touchless": 1.0},
}


RSS_SAMPLE_S = 5.0


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return 3600 * sum((x - mx) * (y - my) for x, y in points) / var


def soak_report(report: dict[str, Any], samples: list[tuple[float, dict[str, float]]]) -> dict:
    """Memory over the soak (first fifth left out: caches and pools filling up), and the
    orders accounted for: refused at entry or ended, and found in PostgreSQL."""
    start = samples[-1][0] / 5 if samples else 0.0
    steady = [(t, mb) for t, mb in samples if t >= start]
    slope, first, last = {}, {}, {}
    for role in ("worker", "api"):
        points = [(t, mb[role]) for t, mb in steady if role in mb]
        if points:
            slope[role] = round(slope_per_hour(points) or 0.0, 1)
            first[role], last[role] = round(points[0][1], 1), round(points[-1][1], 1)
    return {
        "slope_mb_per_hour": slope,
        "rss_after_warmup_mb": first,
        "rss_at_end_mb": last,
        "samples": len(samples),
        "accounted_for": report.pop("_accounted", 0),
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def sustained_rate(times: list[float]) -> float | None:
    """Completions per second between the 10th and 90th percentile completion (warm-up and
    tail excluded)."""
    if len(times) < 5:
        return None
    ordered = sorted(times)
    lo, hi = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
    n = (len(ordered) * 9) // 10 - len(ordered) // 10
    return n / (hi - lo) if hi > lo else None


# ---- bare Temporal skeletons for the baseline (bench/skeleton.py) ------------------------


async def run_skeleton(client: Client, kind: str, n: int, concurrency: int) -> dict[str, Any]:
    """Start n skeleton workflows as the pipeline's orders are started (bounded concurrency
    on the start call, not on completion) on a fresh queue, and measure completions/s."""
    queue = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    wf = ActivitySkeleton if kind == "activity" else LocalSkeleton
    done: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    slots = Settings()
    precompile_workflows()  # as the order worker does at start
    async with Worker(
        client,
        task_queue=queue,
        workflows=[wf],
        activities=[noop],
        # The same slots as the order worker (config.py, ORDERFLOW_MAX_CONCURRENT_*), so
        # both are tuned alike.
        max_concurrent_workflow_tasks=slots.max_concurrent_workflow_tasks,
        max_concurrent_activities=slots.max_concurrent_activities,
        max_concurrent_local_activities=slots.max_concurrent_local_activities,
        # Like the order worker: its own module passed through the sandbox when the
        # order workflow's are (workers/main.py, workflow_runner).
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(wf.__module__)
        )
        if slots.workflow_sandbox and slots.workflow_sandbox_passthrough
        else SandboxedWorkflowRunner()
        if slots.workflow_sandbox
        else UnsandboxedWorkflowRunner(),
    ):

        async def one(i: int) -> None:
            async with sem:
                handle = await client.start_workflow(
                    wf.run, PIPELINE_STEPS, id=f"{queue}-{i}", task_queue=queue
                )
            await handle.result()
            done.append(time.time())

        procs = _stack_processes()
        procs["worker"] = [psutil.Process()]  # the skeleton's worker is this process
        cpu_start = _cpu_seconds(procs)
        start = time.time()
        await asyncio.gather(*(one(i) for i in range(n)))
        cpu_end = _cpu_seconds(procs)
    return {
        "kind": kind,
        "workflows": n,
        "per_second": sustained_rate(done),
        "elapsed_s": round(max(done) - start, 2) if done else None,
        # What one skeleton workflow costs Temporal and its worker (this process, which
        # also starts them): the floor the pipeline's CPU per order compares with.
        "cpu_ms_per_workflow": {
            role: round(1000 * (cpu_end[role] - cpu_start[role]) / n, 1)
            for role in ("temporal", "worker")
            if role in cpu_end
        },
    }


# ---- the pipeline driven through the API --------------------------------------------


@dataclass
class Plan:
    kind: str
    key: str
    posted_at: float | None = None  # wall clock, like the server's timestamps
    order_id: str | None = None
    status: str | None = None
    done_at: float | None = None


@dataclass
class Run:
    api: str
    tokens: dict[str, str]
    channel: str
    start: float = field(default_factory=time.monotonic)
    intake_ms: list[float] = field(default_factory=list)
    intake_at: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rss: dict[str, float] = field(default_factory=dict)
    # CPU seconds each part of the stack spent during the run (user + system).
    cpu: dict[str, float] = field(default_factory=dict)
    swept_at: float = 0.0
    full_at: float = 0.0
    # What the bench's own looking cost the API: list requests and the items they returned.
    list_requests: int = 0
    listed_items: int = 0
    # POSTs sent again after a transport error (same Idempotency-Key).
    retries: Counter[str] = field(default_factory=Counter)
    # (seconds since start, {role: RSS MB}) every RSS_SAMPLE_S, for the soak's slope.
    rss_samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


async def _setup(http: httpx.AsyncClient, api: str, admin: str, run_id: str) -> dict[str, Any]:
    """Bench customers, products and users, created through the API."""
    h = {"Authorization": f"Bearer {admin}"}

    async def post(path: str, body: Any) -> Any:
        r = await http.post(f"{api}{path}", json=body, headers=h)
        r.raise_for_status()
        return r.json()

    address = {
        "line1": "1 Bench Road",
        "city": "Shanghai",
        "postal_code": "200000",
        "country": "CN",
    }
    big = f"BENCH-{run_id}-BIG"
    tight = f"BENCH-{run_id}-TIGHT"
    await post(
        "/customers",
        {
            "code": big,
            "name": "Bench big",
            "tier": "gold",
            "credit_limit": "999999999999.00",
            "address": address,
        },
    )
    await post(
        "/customers",
        {
            "code": tight,
            "name": "Bench tight",
            "tier": "standard",
            "credit_limit": "1.00",
            "address": address,
        },
    )
    skus = [f"B{run_id}-{i}" for i in range(5)]
    scarce = f"B{run_id}-SCARCE"
    for sku in [*skus, scarce]:
        await post(
            "/products",
            {
                "sku": sku,
                "name": sku,
                "unit_price": "10.00",
                "floor_price": "5.00",
                "bin_location": f"Z-{sku[-1]}",
            },
        )
    for sku in skus:
        r = await http.put(f"{api}/inventory/{sku}", json={"on_hand": 10_000_000}, headers=h)
        r.raise_for_status()
    tokens = {"admin": admin}
    for role in ("channel", "credit_controller", "ops"):
        # A channel user may send orders for its own channel only.
        bound = channel_name(run_id) if role == "channel" else None
        token = await _user(http, api, admin, f"bench-{role}-{run_id}", role, bound)
        tokens[role] = token
    return {"big": big, "tight": tight, "skus": skus, "scarce": scarce, "tokens": tokens}


def channel_name(run_id: str) -> str:
    """The run's channel (lower case, as channel names are)."""
    return f"bench-{run_id.lower()}"


async def _user(
    http: httpx.AsyncClient, api: str, admin: str, name: str, role: str, channel: str | None = None
) -> str:
    r = await http.post(
        f"{api}/users",
        json={"name": name, "role": role, **({"channel": channel} if channel else {})},
        headers={"Authorization": f"Bearer {admin}"},
    )
    r.raise_for_status()
    return str(r.json()["token"])


def _body(plan: Plan, setup: dict[str, Any], channel: str, rng: random.Random) -> dict:
    sku = rng.choice(setup["skus"])
    if plan.kind == "touchless":
        return {
            "customer_code": setup["big"],
            "channel": channel,
            "external_ref": plan.key,
            "lines": [{"sku": sku, "quantity": rng.randint(1, 5)}],
        }
    if plan.kind == "approval":
        return {
            "customer_code": setup["tight"],
            "channel": channel,
            "external_ref": plan.key,
            "lines": [{"sku": sku, "quantity": 1}],
        }
    if plan.kind == "short":
        return {
            "customer_code": setup["big"],
            "channel": channel,
            "external_ref": plan.key,
            "lines": [{"sku": setup["scarce"], "quantity": 1}],
        }
    return {
        "customer_code": setup["big"],
        "channel": channel,
        "external_ref": plan.key,
        "lines": [{"sku": sku, "quantity": 0}],
    }  # invalid at entry


async def _post_order(http: httpx.AsyncClient, run: Run, plan: Plan, body: dict) -> None:
    t0 = time.monotonic()
    for attempt in range(3):
        try:
            r = await http.post(
                f"{run.api}/orders",
                json=body,
                headers={**run.h("channel"), "Idempotency-Key": plan.key},
            )
            break
        except httpx.TransportError as err:
            # A kept-alive connection the server closed as we reused it: send again, as a
            # channel would; the Idempotency-Key makes that safe. Counted, not hidden.
            run.retries[type(err).__name__] += 1
            if attempt == 2:
                run.errors[f"intake:{type(err).__name__}"] += 1
                return
        except httpx.HTTPError as err:
            run.errors[f"intake:{type(err).__name__}"] += 1
            return
    run.intake_ms.append((time.monotonic() - t0) * 1000)
    run.intake_at.append(t0 - run.start)
    if plan.kind == "invalid":
        if r.status_code != 422:
            run.errors[f"invalid accepted:{r.status_code}"] += 1
        plan.status = "refused"
        plan.done_at = time.time()
        return
    if r.status_code != 201:
        run.errors[f"intake:{r.status_code}"] += 1
        return
    plan.order_id = r.json()["id"]
    plan.posted_at = time.time() - (time.monotonic() - t0)


async def _drive(
    http: httpx.AsyncClient, run: Run, plans: dict[str, Plan], setup: dict, finished: asyncio.Event
) -> None:
    """Act as approvers, the warehouse and the carrier until every order has ended: poll the
    orders that changed since the last look, as an integration would."""
    approved: set[str] = set()
    delivered: set[str] = set()
    replenished = False
    final = {"completed", "rejected", "cancelled", "failed"}
    by_id: dict[str, Plan] = {}
    since: str | None = None
    while not finished.is_set():
        try:
            since, replenished = await _poll_once(
                http, run, plans, setup, by_id, approved, delivered, final, since, replenished
            )
        except (httpx.HTTPError, ValueError, KeyError) as err:
            # A poll that failed (a timeout on a loaded machine, an answer that was not
            # JSON) is asked again; it is counted, and an order it hid is still followed.
            run.retries[f"poll:{type(err).__name__}"] += 1
        # Four times a second: slower polls act on bigger bursts of orders at once, which
        # measured worse for intake latency (p50 45 -> 110 ms at --rate 7) than more polls.
        await asyncio.sleep(POLL_SECONDS)


async def _poll_once(
    http: httpx.AsyncClient,
    run: Run,
    plans: dict[str, Plan],
    setup: dict[str, Any],
    by_id: dict[str, Plan],
    approved: set[str],
    delivered: set[str],
    final: set[str],
    since: str | None,
    replenished: bool,
) -> tuple[str | None, bool]:
    by_id.update({p.order_id: p for p in plans.values() if p.order_id})
    polled_at = datetime.now().astimezone()
    # What the bench acts on, at every poll: the orders waiting for the carrier's delivery
    # or for an approval (each is in that status only until the bench has acted).
    looks: list[dict[str, Any]] = [{"status": "invoiced"}, {"status": "awaiting_approval"}]
    full = time.monotonic() - run.full_at >= FULL_POLL_SECONDS
    if full:
        run.full_at = time.monotonic()
        looks.append({"updated_since": since} if since else {})
    for look in looks:
        await _list_and_act(http, run, look, by_id, approved, delivered, final)
    if full:
        # Overlap: a change is stamped when its transaction began, which can be seconds
        # before it commits on a loaded machine; stragglers are then asked for one by one.
        since = (polled_at - timedelta(seconds=5)).isoformat()
    await _sweep_stragglers(http, run, plans, by_id, approved, delivered, final)
    if not replenished and any(
        p.kind == "short" and p.status == "backordered" for p in plans.values()
    ):
        await asyncio.sleep(0.5)  # replenish a little later, as a warehouse would
        shorts = sum(p.kind == "short" for p in plans.values())
        await http.put(
            f"{run.api}/inventory/{setup['scarce']}",
            json={"on_hand": shorts},
            headers=run.h("ops"),
        )
        replenished = True
    return since, replenished


async def _list_and_act(
    http: httpx.AsyncClient,
    run: Run,
    look: dict[str, Any],
    by_id: dict[str, Plan],
    approved: set[str],
    delivered: set[str],
    final: set[str],
) -> None:
    cursor = None
    while True:
        params: dict[str, Any] = {"channel": run.channel, "limit": 500, **look}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get(f"{run.api}/orders", params=params, headers=run.h("admin"))).json()
        run.list_requests += 1
        run.listed_items += len(page["items"])
        # Approvers and the carrier act on many orders at once, as they would.
        await asyncio.gather(
            *(_act(http, run, item, by_id, approved, delivered, final) for item in page["items"])
        )
        cursor = page["next_cursor"]
        if not cursor:
            break


async def _sweep_stragglers(
    http: httpx.AsyncClient,
    run: Run,
    plans: dict[str, Plan],
    by_id: dict[str, Plan],
    approved: set[str],
    delivered: set[str],
    final: set[str],
) -> None:
    """When few orders are left open, read each of them directly (every 2 s at most)."""
    now = time.monotonic()
    if now - run.swept_at < 2.0:
        return
    run.swept_at = now
    open_ids = [p.order_id for p in plans.values() if p.order_id and p.done_at is None]
    if not open_ids or len(open_ids) > 50:
        return
    for order_id in open_ids:
        r = await http.get(f"{run.api}/orders/{order_id}", headers=run.h("admin"))
        if r.status_code == 200:
            order = r.json()
            item = {**order, "updated_at": _last_change(order)}
            await _act(http, run, item, by_id, approved, delivered, final)


def _last_change(order: dict) -> str:
    stamps = [e["at"] for e in order["timeline"] if e["kind"] == "status"]
    return max(stamps) if stamps else order["created_at"]


async def _act(
    http: httpx.AsyncClient,
    run: Run,
    item: dict,
    by_id: dict[str, Plan],
    approved: set[str],
    delivered: set[str],
    final: set[str],
) -> None:
    plan = by_id.get(item["id"])
    if plan is None:
        return
    plan.status = item["status"]
    if item["status"] in final and plan.done_at is None:
        plan.done_at = datetime.fromisoformat(item["updated_at"]).timestamp()
    elif item["status"] == "awaiting_approval" and item["id"] not in approved:
        approved.add(item["id"])
        try:
            await _approve(http, run, item["id"])
        except httpx.TransportError:
            approved.discard(item["id"])  # not heard: decide again at the next look
            raise
    elif item["status"] == "invoiced" and item["id"] not in delivered:
        delivered.add(item["id"])
        try:
            order = (
                await http.get(f"{run.api}/orders/{item['id']}", headers=run.h("admin"))
            ).json()
            for shipment in order["shipments"]:  # a delivery event twice is harmless
                r = await http.post(
                    f"{run.api}/shipments/{shipment['tracking_number']}/events",
                    json={"status": "delivered"},
                    headers=run.h("channel"),
                )
                if r.status_code != 200:
                    run.errors[f"carrier:{r.status_code}"] += 1
        except (httpx.TransportError, ValueError, KeyError):
            delivered.discard(item["id"])  # report the delivery again at the next look
            raise


async def _approve(http: httpx.AsyncClient, run: Run, order_id: str) -> None:
    """Approve the pending level as the credit controller; anything but a 200 is an error."""
    r = await http.post(
        f"{run.api}/orders/{order_id}/decision",
        json={"decision": "approve", "comment": "bench"},
        headers=run.h("credit_controller"),
    )
    if r.status_code != 200:
        run.errors[f"decision:{r.status_code}"] += 1


ROLES = {
    "worker": ("orderflow.cli worker", "orderflow worker"),
    "api": ("orderflow.cli api", "orderflow api"),
    "temporal": ("temporal server start-dev",),
    "postgres": ("postgres",),
}


def _stack_root(api: str | None) -> psutil.Process | None:
    """The `orderflow up` that serves `api` (the parent of the process listening on its port),
    so that other stacks on the same machine (a test run, a second `up`) are not counted."""
    port = urlsplit(api).port if api else None
    if port is None:
        return None
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            port_of = getattr(conn.laddr, "port", None)  # laddr may be an empty tuple
            if conn.status == psutil.CONN_LISTEN and port_of == port and conn.pid:
                listener = psutil.Process(conn.pid)
                parent = listener.parent()
                if parent is not None and "orderflow" in " ".join(parent.cmdline()):
                    return parent
    return None


def _stack_processes(api: str | None = None) -> dict[str, list[psutil.Process]]:
    """The stack's processes by role, found by their command lines (several worker
    processes, and every PostgreSQL backend, count together): the descendants of the
    `orderflow up` serving `api` when there is one, else every such process on the machine."""
    procs: dict[str, list[psutil.Process]] = {}
    root = _stack_root(api)
    candidates = root.children(recursive=True) if root is not None else psutil.process_iter()
    for p in candidates:
        try:
            cmd = " ".join(p.cmdline()) or p.name()
        except psutil.Error:
            continue
        for role, marks in ROLES.items():
            if any(m in cmd for m in marks) and "orderflow bench" not in cmd:
                procs.setdefault(role, []).append(p)
                break
    return procs


def _cpu_seconds(procs: dict[str, list[psutil.Process]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for role, ps in procs.items():
        total = 0.0
        for p in ps:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        out[role] = total
    return out


def _rss_sampler(run: Run, stop: asyncio.Event) -> asyncio.Task[None]:
    """Peak RSS of the worker(s) and the API, and the CPU time each part of the stack spent
    while the run lasted (a steadier measure than throughput on a shared machine)."""

    async def sample() -> None:
        procs = _stack_processes(run.api)
        cpu_start = _cpu_seconds(procs)
        last_sample = -RSS_SAMPLE_S
        while not stop.is_set():
            now: dict[str, float] = {}
            for role in ("worker", "api"):
                total = 0.0
                for p in procs.get(role, []):
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss / 2**20
                if total:
                    run.rss[role] = max(run.rss.get(role, 0.0), total)
                    now[role] = total
            at = time.monotonic() - run.start
            if at - last_sample >= RSS_SAMPLE_S:
                run.rss_samples.append((round(at, 1), now))
                last_sample = at
                # A process restarted by `up` is looked up again.
                if any(not p.is_running() for ps in procs.values() for p in ps):
                    procs = _stack_processes(run.api)
            await asyncio.sleep(0.5)
        # Backends that started during the run count from zero.
        procs = _stack_processes(run.api)
        cpu_end = _cpu_seconds(procs)
        run.cpu = {r: cpu_end[r] - cpu_start.get(r, 0.0) for r in cpu_end}

    return asyncio.create_task(sample())


async def bench_pipeline(
    api: str,
    admin_token: str,
    orders: int,
    concurrency: int,
    rate: float | None,
    mix: str,
    console: Console,
    seed: int = 7,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6].upper()
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=concurrency + 20)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        setup = await _setup(http, api, admin_token, run_id)
        run = Run(api=api, tokens=setup["tokens"], channel=channel_name(run_id))
        weights = MIXES[mix]
        kinds = rng.choices(list(weights), weights=list(weights.values()), k=orders)
        plans = {f"{run_id}-{i}": Plan(kind, f"{run_id}-{i}") for i, kind in enumerate(kinds)}
        finished = asyncio.Event()
        stop_rss = asyncio.Event()
        sampler = _rss_sampler(run, stop_rss)
        driver = asyncio.create_task(_drive(http, run, plans, setup, finished))
        sem = asyncio.Semaphore(concurrency)
        run.start = time.monotonic()

        async def offer(i: int, plan: Plan) -> None:
            if rate:
                await asyncio.sleep(max(0.0, run.start + i / rate - time.monotonic()))
            async with sem:
                await _post_order(http, run, plan, _body(plan, setup, run.channel, rng))

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            posted = bar.add_task("orders offered", total=orders)
            ended = bar.add_task("orders ended", total=orders)
            tasks = [asyncio.create_task(offer(i, p)) for i, p in enumerate(plans.values())]
            for t in tasks:
                t.add_done_callback(lambda _: bar.advance(posted))
            # Offering alone takes orders / rate at a fixed rate (a soak: its whole length);
            # then ten minutes for the last ones to end.
            offering_s = orders / rate if rate else orders * 0.5
            deadline = run.start + offering_s + 600
            while time.monotonic() < deadline:
                bar.update(ended, completed=sum(p.done_at is not None for p in plans.values()))
                if driver.done():
                    driver.result()  # the driver never ends on its own: show why it did
                offered = all(t.done() for t in tasks)
                if offered and all(
                    p.done_at is not None or p.order_id is None for p in plans.values()
                ):
                    break
                await asyncio.sleep(0.25)
        # Past the deadline, orders not yet offered are not offered any more (they count
        # as never accepted) and none is left posting after the report.
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        finished.set()
        stop_rss.set()
        await asyncio.gather(driver, sampler, return_exceptions=True)
        return _report(run, plans, run.channel)


def _report(run: Run, plans: dict[str, Plan], channel: str) -> dict[str, Any]:
    unfinished = [p for p in plans.values() if p.done_at is None]
    for p in unfinished:
        run.errors["not finished" if p.order_id else "never accepted"] += 1
    for p in plans.values():
        if p.kind in ("touchless", "approval", "short") and p.status not in (None, "completed"):
            run.errors[f"ended {p.status}"] += 1
    completed = [p for p in plans.values() if p.status == "completed" and p.done_at]
    touchless = [
        p.done_at - p.posted_at
        for p in completed
        if p.kind == "touchless" and p.done_at and p.posted_at
    ]
    done_times = [p.done_at for p in completed if p.done_at is not None]
    return {
        "_accounted": sum(p.done_at is not None for p in plans.values()),
        "_rss_samples": run.rss_samples,
        "channel": channel,
        "orders": len(plans),
        "mix": dict(Counter(p.kind for p in plans.values())),
        "completed": len(completed),
        "completed_per_second": sustained_rate(done_times),
        "intake_ms": {
            q: percentile(run.intake_ms, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "end_to_end_touchless_s": {
            q: percentile(touchless, v) for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
        },
        "errors": dict(run.errors),
        "intake_retries": dict(run.retries),
        # The bench's own looking, which the API's CPU per order includes.
        "polling": {
            "list_requests": run.list_requests,
            "listed_items": run.listed_items,
            "items_per_order": round(run.listed_items / max(len(plans), 1), 1),
        },
        "peak_rss_mb": {k: round(v, 1) for k, v in run.rss.items()},
        # CPU milliseconds per order each part of the stack spent (bench excluded).
        "cpu_ms_per_order": {
            k: round(1000 * v / max(len(plans), 1), 1) for k, v in sorted(run.cpu.items())
        },
        "timeline": {
            "intake_at": run.intake_at,
            "intake_ms": run.intake_ms,
            "completed_at": sorted(done_times),
        },
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput (completions per second) and intake latency over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=False)
    done = tl["completed_at"]
    if done:
        t0 = min(done)
        secs = [d - t0 for d in done]
        buckets = Counter(int(s) for s in secs)
        xs = list(range(int(max(secs)) + 1))
        top.plot(xs, [buckets.get(x, 0) for x in xs])
    top.set_title("orders completed per second")
    top.set_xlabel("seconds since the first completion")
    bottom.scatter(tl["intake_at"], tl["intake_ms"], s=3)
    bottom.set_title("intake latency (POST /orders)")
    bottom.set_xlabel("seconds since start")
    bottom.set_ylabel("ms")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarize(report: dict[str, Any]) -> str:
    soak = report.get("soak")
    lines = [
        f"soak {soak['duration_s']:.0f} s at {soak['rate']} orders/s: "
        f"{soak['accounted_for']}/{report['orders']} orders accounted for; "
        f"RSS slope MB/hour {soak['slope_mb_per_hour']} "
        f"(after warm-up {soak['rss_after_warmup_mb']}, at end {soak['rss_at_end_mb']})"
    ] if soak else []
    lines += [
        f"orders {report['orders']} {report['mix']}: completed {report['completed']}",
        f"completed/s (sustained): {report['completed_per_second']}",
        "intake ms p50/p95/p99: "
        + "/".join(f"{v:.1f}" if v is not None else "-" for v in report["intake_ms"].values()),
        f"errors: {report['errors'] or 'none'}"
        + (
            f" (intake re-sent: {report['intake_retries']})" if report.get("intake_retries") else ""
        ),
        f"peak RSS MB: {report['peak_rss_mb']}",
        f"CPU ms per order: {report.get('cpu_ms_per_order')}",
    ]
    for b in report.get("baseline", []):
        lines.append(
            f"baseline {b['kind']}: {b['per_second']} wf/s -> pipeline ratio {b.get('ratio')}"
            f"; CPU ms per workflow {b.get('cpu_ms_per_workflow')}"
        )
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(
        report,
        indent=2,
        default=lambda o: o.isoformat() if isinstance(o, (date, datetime)) else str(o),
    )


async def count_in_db(database_url: str, channel: str) -> dict[str, int]:
    """What PostgreSQL holds for the run: orders, distinct references, shipments, invoices."""
    from sqlalchemy import text

    from db.session import make_engine

    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT external_ref), "
                        "(SELECT count(*) FROM shipments s JOIN orders o ON o.id = s.order_id "
                        " WHERE o.channel = :c), "
                        "(SELECT count(*) FROM invoices i JOIN orders o ON o.id = i.order_id "
                        " WHERE o.channel = :c) FROM orders WHERE channel = :c"
                    ),
                    {"c": channel},
                )
            ).one()
    finally:
        await engine.dispose()
    return {"orders": row[0], "distinct_refs": row[1], "shipments": row[2], "invoices": row[3]}


def check_counts(report: dict[str, Any], db: dict[str, int]) -> list[str]:
    """No order lost or doubled: the database agrees with what the bench saw."""
    accepted = report["orders"] - report["mix"].get("invalid", 0)
    problems = []
    if db["orders"] != accepted:
        problems.append(f"database holds {db['orders']} orders, {accepted} were accepted")
    if db["distinct_refs"] != db["orders"]:
        problems.append("an external reference appears on more than one order")
    if db["shipments"] != report["completed"] or db["invoices"] != report["completed"]:
        problems.append(
            f"{db['shipments']} shipments / {db['invoices']} invoices for "
            f"{report['completed']} completed orders"
        )
    return problems


async def bench_backlog(
    api: str, admin_token: str, n: int, concurrency: int, console: Console
) -> dict[str, Any]:
    """n orders that wait for approval: time to start them, worker memory with them open,
    intake latency before and while open, and the time for their approvals to drain."""
    run_id = uuid.uuid4().hex[:6].upper()
    rng = random.Random(11)
    async with httpx.AsyncClient(
        timeout=120, limits=httpx.Limits(max_connections=concurrency + 20)
    ) as http:
        setup = await _setup(http, api, admin_token, run_id)
        run = Run(api=api, tokens=setup["tokens"], channel=channel_name(run_id))
        stop = asyncio.Event()
        sampler = _rss_sampler(run, stop)
        sem = asyncio.Semaphore(concurrency)

        async def probe(tag: str) -> dict[str, float | None]:
            run.intake_ms.clear()
            for i in range(50):
                plan = Plan("touchless", f"{run_id}-{tag}-{i}")
                await _post_order(http, run, plan, _body(plan, setup, run.channel, rng))
            return {q: percentile(run.intake_ms, v) for q, v in (("p50", 0.5), ("p99", 0.99))}

        before = await probe("before")
        plans = [Plan("approval", f"{run_id}-{i}") for i in range(n)]

        async def post(plan: Plan) -> None:
            async with sem:
                await _post_order(http, run, plan, _body(plan, setup, run.channel, rng))

        t0 = time.monotonic()
        with Progress(console=console) as bar:
            task = bar.add_task("starting the backlog", total=n)
            for chunk in range(0, n, 500):
                await asyncio.gather(*(post(p) for p in plans[chunk : chunk + 500]))
                bar.update(task, completed=min(chunk + 500, n))
        start_s = time.monotonic() - t0
        waiting = await _count(http, run, "awaiting_approval")
        while waiting < sum(p.order_id is not None for p in plans):
            await asyncio.sleep(1)
            waiting = await _count(http, run, "awaiting_approval")
        await asyncio.sleep(2)
        rss_open = dict(run.rss)
        during = await probe("during")

        async def approve(order_id: str) -> None:
            async with sem:
                await _approve(http, run, order_id)

        t1 = time.monotonic()
        await asyncio.gather(*(approve(p.order_id) for p in plans if p.order_id))
        while True:  # polling the API is the point: the bench sees what a client sees
            if not await _count(http, run, "awaiting_approval"):
                break
            await asyncio.sleep(0.5)
        drain_s = time.monotonic() - t1
        stop.set()
        await sampler
    return {
        "backlog": n,
        "start_s": round(start_s, 1),
        "awaiting": waiting,
        "peak_rss_mb_with_backlog_open": {k: round(v, 1) for k, v in rss_open.items()},
        "intake_ms_before": before,
        "intake_ms_while_open": during,
        "approvals_drain_s": round(drain_s, 1),
        "errors": dict(run.errors),
    }


async def _count(http: httpx.AsyncClient, run: Run, status: str) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"channel": run.channel, "status": status, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get(f"{run.api}/orders", params=params, headers=run.h("admin"))).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return total


async def calibrate(
    api: str, admin_token: str, concurrency: int, mix: str, console: Console
) -> float:
    """The sustained rate of this stack, from a short run as fast as it goes (orders/s)."""
    console.print("soak: measuring the sustained rate with 200 orders …")
    report = await bench_pipeline(api, admin_token, 200, concurrency, None, mix, console)
    return float(report["completed_per_second"] or 1.0)
