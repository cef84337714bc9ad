"""`orderflow up` as a subprocess on free ports with a temp data dir, for the crash tests:
find its children, kill them, and watch the stack heal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil

from db.session import make_engine, make_session_factory
from orderflow.embedded import free_port
from tests.utils import assert_books_balance

TOKEN = "test-bootstrap-token-heal-0123456789"
# How each child is recognised among `up`'s descendants.
MARKS = {
    "worker": "orderflow.cli worker",
    "api": "orderflow.cli api",
    "temporal": "server start-dev",
    "postgres": "/bin/postgres -D",
}
FINAL = {"completed", "rejected", "cancelled", "failed"}


def wait_for(what: str, check: Callable[[], Any], within: float, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what}: not within {within:.0f} s")


class UpStack:
    def __init__(self, home: Path, **env: str):
        self.home = home
        self.ports = {k: free_port() for k in ("api", "pg", "temporal", "ui")}
        self.api = f"http://127.0.0.1:{self.ports['api']}"
        self.ledger = home / "carrier.ledger"
        self.log = home / "up.log"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ORDERFLOW_", "TEMPORAL_"))
        }
        self.env.update(
            {
                "ORDERFLOW_HOME": str(home),
                "ORDERFLOW_BOOTSTRAP_TOKEN": TOKEN,
                "ORDERFLOW_API_PORT": str(self.ports["api"]),
                "ORDERFLOW_PG_PORT": str(self.ports["pg"]),
                "ORDERFLOW_TEMPORAL_PORT": str(self.ports["temporal"]),
                "ORDERFLOW_TEMPORAL_UI_PORT": str(self.ports["ui"]),
                "ORDERFLOW_CARRIER_LEDGER": str(self.ledger),
                "ORDERFLOW_CARRIER_TRANSIT_SECONDS": "1",
                "ORDERFLOW_DELIVERY_POLL_SECONDS": "1",
                "ORDERFLOW_WORKER_NICE": "0",
                **env,
            }
        )
        self.http = httpx.Client(
            base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
        )
        self.proc: subprocess.Popen | None = None

    # ---- the stack -------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orderflow.cli", "up"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for("the stack to come up", self._banner_or_exit, timeout, 0.3)

    def _banner_or_exit(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
        return "Orderflow is up" in self.log.read_text()

    def stop(self) -> None:
        self.http.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for child in children:  # nothing may outlive a failed test either
            if child.is_running():
                child.kill()

    def pid(self, name: str) -> int | None:
        assert self.proc is not None
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
                if MARKS[name] in cmd and p.status() != psutil.STATUS_ZOMBIE:
                    return p.pid
            except psutil.Error:
                continue
        return None

    def kill(self, name: str) -> tuple[int, float]:
        """SIGKILL a child; returns its pid and the moment."""
        pid = self.pid(name)
        assert pid is not None, f"no {name} running"
        os.kill(pid, signal.SIGKILL)
        return pid, time.monotonic()

    def healthy(self) -> bool:
        try:
            return self.http.get("/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def heal_time(self, name: str, old_pid: int, killed_at: float, within: float = 60) -> float:
        """Seconds from the kill until a new `name` runs and /health answers 200."""

        def back() -> bool:
            pid = self.pid(name)
            return pid is not None and pid != old_pid and self.healthy()

        wait_for(f"{name} restarted and /health 200", back, within)
        return time.monotonic() - killed_at

    # ---- orders ----------------------------------------------------------------------

    def setup(self, stock: int = 100_000) -> tuple[str, str]:
        """A customer with room on its credit and a product with plenty of stock."""
        tag = uuid.uuid4().hex[:8].upper()
        customer, sku = f"C-HEAL-{tag}", f"P-HEAL-{tag}"
        r = self.http.post(
            "/customers",
            json={
                "code": customer,
                "name": customer,
                "tier": "gold",
                "credit_limit": "999999999.00",
                "address": {
                    "line1": "1 Heal St",
                    "city": "Shanghai",
                    "postal_code": "200000",
                    "country": "CN",
                },
            },
        )
        assert r.status_code == 201, r.text
        r = self.http.post(
            "/products",
            json={
                "sku": sku,
                "name": sku,
                "unit_price": "10.00",
                "floor_price": "5.00",
                "bin_location": "H-01-01",
            },
        )
        assert r.status_code == 201, r.text
        assert self.http.put(f"/inventory/{sku}", json={"on_hand": stock}).status_code == 200
        return customer, sku

    def order(self, customer: str, sku: str, key: str | None = None) -> httpx.Response:
        key = key or uuid.uuid4().hex
        return self.http.post(
            "/orders",
            json={
                "customer_code": customer,
                "external_ref": key,
                "lines": [{"sku": sku, "quantity": 2}],
            },
            headers={"Idempotency-Key": key},
        )

    def orders(self, customer: str, sku: str, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            r = self.order(customer, sku)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        return ids

    def statuses(self, ids: list[str]) -> dict[str, str]:
        out = {}
        for order_id in ids:
            try:
                r = self.http.get(f"/orders/{order_id}")
                ok = r.status_code == 200
                out[order_id] = r.json()["status"] if ok else f"http {r.status_code}"
            except httpx.HTTPError as err:
                out[order_id] = type(err).__name__
        return out

    def wait_some(self, ids: list[str], status: str, within: float = 60) -> None:
        wait_for(f"an order {status}", lambda: status in self.statuses(ids).values(), within, 0.1)

    def wait_all_completed(self, ids: list[str], within: float = 120) -> None:
        def done() -> bool:
            return all(s == "completed" for s in self.statuses(ids).values())

        try:
            wait_for("every order completed", done, within, 0.5)
        except AssertionError:
            raise AssertionError(f"{Counter(self.statuses(ids).values())}") from None

    def assert_exactly_once(self, ids: list[str], sku: str) -> Counter[str]:
        """One shipment, one invoice, one 'shipped' per order; the carrier booked each
        shipment once (a retried call carries the same key); books balance. Returns the
        carrier's calls per shipment."""
        calls = self.carrier_calls()
        for order_id in ids:
            order = self.http.get(f"/orders/{order_id}").json()
            assert order["status"] == "completed", order
            assert len(order["shipments"]) == 1, order["shipments"]
            assert order["invoice"] is not None, order_id
            assert [e["status"] for e in order["timeline"]].count("shipped") == 1, order_id
            booked = {t for (o, _n, t), c in calls.items() if o == order_id}
            assert booked == {order["shipments"][0]["tracking_number"]}, (order_id, booked)
        asyncio.run(self.books_balance(sku))
        return calls

    def carrier_calls(self) -> Counter[tuple[str, str, str]]:
        """Booking calls the carrier received, per (order, shipment no, tracking number);
        bookings it was asked to cancel are left out."""
        lines = self.ledger.read_text().split("\n") if self.ledger.exists() else []
        books: Counter[tuple[str, str, str]] = Counter()
        cancelled = set()
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "book":
                books[(parts[1], parts[2], parts[3])] += 1
            elif len(parts) == 4 and parts[0] == "cancel":
                cancelled.add((parts[1], parts[2], parts[3]))
        return Counter({k: v for k, v in books.items() if k not in cancelled})

    async def books_balance(self, sku: str) -> None:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{self.ports['pg']}/orderflow"
        engine = make_engine(url, pool_size=1)
        try:
            await assert_books_balance(
                SimpleNamespace(sessions=make_session_factory(engine)),
                sku,
            )
        finally:
            await engine.dispose()

    def supervisor_log(self) -> str:
        path = self.home / "supervisor.log"
        return path.read_text() if path.exists() else ""
