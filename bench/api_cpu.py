"""The API process's CPU per request, for the four requests `orderflow bench` makes per order.

Run against a running stack (its own ports and home: docs/performance.md):

    .venv/bin/python -m bench.api_cpu --api http://127.0.0.1:PORT --admin TOKEN -n 100

It sets the bench's customers, products and users up through the API (bench/driver.py's
`_setup`), then sends N of each request, first one at a time and then 8 at a time, and reports
the CPU (user + system) the API process spent per request, read from psutil before and after
each batch (the process found as bench/driver.py finds it). CPU time, not wall time: it does
not depend on what else the machine is doing. Prints JSON.

- `POST /orders` with the channel token and an Idempotency-Key (a touchless order);
- `GET /orders?channel=..&updated_since=..&limit=500` as admin (the integration's poll; the
  page holds every order of the run, so `items` says how big a page was);
- `GET /orders/{id}` as admin for an invoiced order (to read its tracking numbers);
- `POST /shipments/{tracking}/events` `{"status": "delivered"}` with the channel token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from bench.driver import _setup, _stack_processes, channel_name

BATCH_CONCURRENCY = 8
KINDS = frozenset({"post", "list", "get"})


def _api_process(api: str) -> psutil.Process:
    """The stack's API process (bench/driver.py's way), else the one listening on the port
    of `api` (an API started by hand beside the stack, e.g. the old code for an A/B run)."""
    procs = _stack_processes(api).get("api", [])
    if len(procs) == 1:
        return procs[0]
    port = urlsplit(api).port
    for conn in psutil.net_connections(kind="tcp"):
        if (
            conn.status == psutil.CONN_LISTEN
            and conn.pid
            and getattr(conn.laddr, "port", 0) == port
        ):
            return psutil.Process(conn.pid)
    raise SystemExit(f"no API process listens on {api}")


def _cpu(p: psutil.Process) -> float:
    """Seconds on CPU of every thread of the process, to the nanosecond (schedstat), where
    psutil's cpu_times counts clock ticks (10 ms): the batches here are short."""
    try:
        total = 0
        for task in Path(f"/proc/{p.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except OSError:
        t = p.cpu_times()
        return t.user + t.system


async def _invoiced(
    http: httpx.AsyncClient,
    api: str,
    adm: dict[str, str],
    channel: str,
    ids: list[str],
    wait: float,
) -> bool:
    """Wait until every order of `ids` is invoiced (or further); False after `wait` seconds."""
    deadline = time.monotonic() + wait
    params: dict[str, str | int] = {"channel": channel, "limit": 500, "status": "invoiced"}
    while time.monotonic() < deadline:
        r = await http.get(f"{api}/orders", params=params, headers=adm)
        if set(ids) <= {o["id"] for o in r.json()["items"]}:
            return True
        await asyncio.sleep(0.25)
    return False


async def _batch(
    proc: psutil.Process,
    calls: list[Callable[[], Awaitable[None]]],
    concurrency: int,
) -> float:
    """CPU ms of the API process per call, for `calls` run `concurrency` at a time."""
    queue = list(calls)
    before = _cpu(proc)

    async def lane() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    await asyncio.sleep(0.2)  # let the last responses' tails (logging, metrics) finish
    return round((_cpu(proc) - before) * 1000 / max(len(calls), 1), 2)


async def _idle_ms_per_s(proc: psutil.Process, seconds: float = 2.0) -> float:
    before = _cpu(proc)
    await asyncio.sleep(seconds)
    return round((_cpu(proc) - before) * 1000 / seconds, 2)


async def run(
    api: str, admin: str, n: int, wait_s: float, only: frozenset[str] = KINDS
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6].upper()
    rng = random.Random(18)
    report: dict[str, Any] = {"n": n, "run_id": run_id}
    async with httpx.AsyncClient(timeout=60) as http:
        setup = await _setup(http, api, admin, run_id)
        channel = channel_name(run_id)
        ch = {"Authorization": f"Bearer {setup['tokens']['channel']}"}
        adm = {"Authorization": f"Bearer {admin}"}
        since = (datetime.now().astimezone() - timedelta(seconds=5)).isoformat()
        proc = _api_process(api)
        report["idle_ms_per_s"] = await _idle_ms_per_s(proc)
        order_ids: list[str] = []
        errors: dict[str, int] = {}

        def err(kind: str) -> None:
            errors[kind] = errors.get(kind, 0) + 1

        def post_order(i: int) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                key = f"cpu-{run_id}-{i}"
                body = {
                    "customer_code": setup["big"],
                    "channel": channel,
                    "external_ref": key,
                    "lines": [{"sku": rng.choice(setup["skus"]), "quantity": rng.randint(1, 5)}],
                }
                r = await http.post(
                    f"{api}/orders", json=body, headers={**ch, "Idempotency-Key": key}
                )
                if r.status_code != 201:
                    err(f"post:{r.status_code}")
                    return
                order_ids.append(r.json()["id"])

            return go

        items: list[int] = []

        async def poll() -> None:
            params: dict[str, str | int] = {
                "channel": channel,
                "updated_since": since,
                "limit": 500,
            }
            r = await http.get(f"{api}/orders", params=params, headers=adm)
            if r.status_code != 200:
                err(f"poll:{r.status_code}")
                return
            items.append(len(r.json()["items"]))

        tracking: list[str] = []
        answers: dict[str, int] = {}  # accepted (signalled) or recorded (the order had ended)

        def get_order(order_id: str) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                r = await http.get(f"{api}/orders/{order_id}", headers=adm)
                if r.status_code != 200:
                    err(f"get:{r.status_code}")
                    return
                tracking.extend(s["tracking_number"] for s in r.json()["shipments"])

            return go

        def deliver(number: str) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                r = await http.post(
                    f"{api}/shipments/{number}/events", json={"status": "delivered"}, headers=ch
                )
                if r.status_code != 200:
                    err(f"event:{r.status_code}")
                    return
                answers[r.json()["status"]] = answers.get(r.json()["status"], 0) + 1

            return go

        cpu: dict[str, dict[str, float]] = {}
        # Warm up (a restarted API compiles its statements and fills its caches): not counted.
        for warm in [post_order(10**6 + i) for i in range(8)] + [poll] * 4:
            await warm()
        order_ids.clear()
        items.clear()
        posts = [post_order(i) for i in range(2 * n)]
        if "post" in only:
            cpu["post_order"] = {
                "seq": await _batch(proc, posts[:n], 1),
                "par8": await _batch(proc, posts[n:], BATCH_CONCURRENCY),
            }
        if "list" in only:
            cpu["list_orders"] = {
                "seq": await _batch(proc, [poll] * n, 1),
                "par8": await _batch(proc, [poll] * n, BATCH_CONCURRENCY),
            }
            report["list_items_per_page"] = round(sum(items) / max(len(items), 1), 1)
        # The worker takes each order to `invoiced`, where it waits for the carrier (whose
        # own tracking reports it delivered some seconds later): in waves of 16, each read
        # and reported delivered as soon as it is invoiced, as the bench's poller does.
        spent: dict[str, float] = {}
        for _ in range(max(n // BATCH_CONCURRENCY, 1) if "get" in only else 0):
            wave_ids = len(order_ids)
            posted = [post_order(len(order_ids) + 2 * n + i) for i in range(16)]
            await asyncio.gather(*(p() for p in posted))
            wave = order_ids[wave_ids:]
            if not await _invoiced(http, api, adm, channel, wave, wait_s):
                err("not invoiced in time")
                continue
            proc = _api_process(api)
            tracking.clear()
            gets = [get_order(o) for o in wave]
            for mode, part, lanes in (("seq", gets[:8], 1), ("par8", gets[8:], 8)):
                ms = await _batch(proc, part, lanes)
                spent[f"get_order.{mode}"] = spent.get(f"get_order.{mode}", 0) + ms * len(part)
            events = [deliver(t) for t in tracking]
            half = len(events) // 2
            for mode, part, lanes in (("seq", events[:half], 1), ("par8", events[half:], 8)):
                ms = await _batch(proc, part, lanes)
                key = f"shipment_event.{mode}"
                spent[key] = spent.get(key, 0) + ms * len(part)
                spent[key + ".n"] = spent.get(key + ".n", 0) + len(part)
            spent["get_order.seq.n"] = spent.get("get_order.seq.n", 0) + 8
            spent["get_order.par8.n"] = spent.get("get_order.par8.n", 0) + len(wave) - 8
        for kind in ("get_order", "shipment_event") if "get" in only else ():
            cpu[kind] = {
                mode: round(
                    spent.get(f"{kind}.{mode}", 0) / max(spent.get(f"{kind}.{mode}.n", 0), 1), 2
                )
                for mode in ("seq", "par8")
            }
        report["cpu_ms_per_request"] = cpu
        report["event_answers"] = answers
        report["errors"] = errors
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", required=True, help="the stack's API base URL")
    parser.add_argument("--admin", required=True, help="an admin token")
    parser.add_argument("-n", type=int, default=100, help="requests of each kind per batch")
    parser.add_argument("--wait", type=float, default=300.0, help="seconds to wait for invoiced")
    parser.add_argument(
        "--only",
        default="post,list,get",
        help="post (POST /orders), list (+ polls), get (+ GET /orders/{id} and the webhook)",
    )
    args = parser.parse_args()
    only = frozenset(args.only.split(","))
    report = asyncio.run(run(args.api.rstrip("/"), args.admin, args.n, args.wait, only))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
