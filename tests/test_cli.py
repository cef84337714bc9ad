"""The `orderflow` command as a user runs it: `up` (start, serve, stop, restart), users."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from orderflow.embedded import EmbeddedPostgres, free_port

TOKEN = "test-bootstrap-token-0123456789"


def _env(home: Path, ports: dict[str, int], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERFLOW_", "TEMPORAL_"))}
    env.update(
        {
            "ORDERFLOW_HOME": str(home),
            "ORDERFLOW_BOOTSTRAP_TOKEN": TOKEN,
            "ORDERFLOW_API_PORT": str(ports["api"]),
            "ORDERFLOW_PG_PORT": str(ports["pg"]),
            "ORDERFLOW_TEMPORAL_PORT": str(ports["temporal"]),
            "ORDERFLOW_TEMPORAL_UI_PORT": str(ports["ui"]),
            **extra,
        }
    )
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "orderflow.cli", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_up(api: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Wait for the banner `up` prints once everything answers, then check health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if log.read_text().count("Orderflow is up") > log.read_text().count("stopped;"):
            assert httpx.get(f"{api}/health", timeout=5).json()["status"] == "ok"
            return
        time.sleep(0.3)
    raise AssertionError(log.read_text())


def _wait_status(api: str, order_id: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = httpx.get(
            f"{api}/orders/{order_id}", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        if body.get("status") == status:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{order_id} is {body.get('status')}, wanted {status}")


def _stop(proc: subprocess.Popen) -> list[int]:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    return children


@pytest.mark.timeout(300)
def test_up_serves_stops_cleanly_and_an_order_in_flight_carries_on(tmp_path: Path):
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    # A slow carrier keeps the order in flight across the restart.
    env = _env(
        tmp_path / "home",
        ports,
        ORDERFLOW_CARRIER_TRANSIT_SECONDS="6",
        ORDERFLOW_DELIVERY_POLL_SECONDS="1",
    )
    log = tmp_path / "up.log"
    api = f"http://127.0.0.1:{ports['api']}"
    proc = _start(env, log)
    try:
        _wait_up(api, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    assert "Temporal UI" in log.read_text()
    assert httpx.get(f"http://127.0.0.1:{ports['ui']}/", timeout=5).status_code == 200
    r = httpx.post(
        f"{api}/orders",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"customer_code": "C-GLD-1", "lines": [{"sku": "WID-001", "quantity": 3}]},
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    _wait_status(api, order_id, "invoiced")

    children = _stop(proc)
    assert children, "up started child processes"
    assert not [
        p
        for p in children
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ], "none left behind"

    proc = _start(env, log)
    try:
        _wait_up(api, proc, log)
        order = _wait_status(api, order_id, "completed")
        assert [e["status"] for e in order["timeline"]].count("shipped") == 1
        stock = httpx.get(
            f"{api}/inventory/WID-001", headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()
        assert stock["on_hand"] == 997 and stock["reserved"] == 0
    finally:
        _stop(proc)


def test_busy_port_gives_a_clear_message(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"api": port, "pg": free_port(), "temporal": free_port(), "ui": free_port()}
        result = subprocess.run(
            [sys.executable, "-m", "orderflow.cli", "up"],
            env=_env(tmp_path, ports),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "ORDERFLOW_API_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_users_create_prints_a_working_token_last(pg: EmbeddedPostgres):
    env = {**os.environ, "ORDERFLOW_DATABASE_URL": pg.url}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orderflow.cli",
            "users",
            "create",
            "ann",
            "--role",
            "credit_controller",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("of_") and len(token) > 30
    bad = subprocess.run(
        [sys.executable, "-m", "orderflow.cli", "users", "create", "bob", "--role", "emperor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown role" in bad.stderr


@pytest.mark.timeout(400)
def test_bench_smoke_run_completes_without_errors(tmp_path: Path):
    """CI's short benchmark: 50 orders of the realistic mix through a real `up` stack."""
    ports = {"api": free_port(), "pg": free_port(), "temporal": free_port(), "ui": free_port()}
    env = _env(tmp_path / "home", ports)
    log = tmp_path / "up.log"
    api = f"http://127.0.0.1:{ports['api']}"
    proc = _start(env, log)
    try:
        _wait_up(api, proc, log)
        out = tmp_path / "bench.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "orderflow.cli",
                "bench",
                "--orders",
                "50",
                "--out",
                str(out),
                "--plot",
                str(tmp_path / "bench.png"),
                "--baseline",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(out.read_text())
        assert report["errors"] == {}
        assert report["database"]["orders"] == 50 - report["mix"].get("invalid", 0)
        assert report["completed"] == report["database"]["invoices"]
        assert (tmp_path / "bench.png").stat().st_size > 1000
        # The skeletons ran on the same server: a rate, a ratio and their CPU for each.
        assert [b["kind"] for b in report["baseline"]] == ["activity", "local"]
        for b in report["baseline"]:
            assert b["per_second"] > 0 and b["ratio"] > 0
            assert b["cpu_ms_per_workflow"]["worker"] > 0
    finally:
        _stop(proc)
