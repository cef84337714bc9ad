"""The fuzzer as a gate: schemathesis over every operation of the live API.

The API (uvicorn) and an order worker run as their own processes on the test session's real
PostgreSQL and Temporal dev server, as `orderflow api` and `orderflow worker` do in
production; schemathesis sends generated requests (valid and invalid ones) as admin, who
may call every route, and checks that no answer is a server error, that every status code
is one the OpenAPI document declares, and that every body matches its declared schema.

Budget: ORDERFLOW_FUZZ_EXAMPLES generated cases per operation (default 20; schemathesis adds
its coverage cases, about 2,800 in all: under two minutes in CI, services included) and
ORDERFLOW_FUZZ_SECONDS for the whole run (default 150), shared evenly by the operations: past
its share, an operation's remaining cases are generated but not sent. `make fuzz` runs it
for ten minutes. The cases sent, per operation and per status, are counted and printed at
the end (and written to ORDERFLOW_FUZZ_REPORT as JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from db.migrate import upgrade
from orderflow.embedded import EmbeddedPostgres, free_port
from services.config import Settings

EXAMPLES = int(os.environ.get("ORDERFLOW_FUZZ_EXAMPLES", "20"))
SECONDS = float(os.environ.get("ORDERFLOW_FUZZ_SECONDS", "150"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
BIN = Path(sys.executable).parent


@dataclass
class FuzzTarget:
    base_url: str
    token: str
    api_log: Path
    started: float = field(default_factory=time.monotonic)
    sent: Counter[str] = field(default_factory=Counter)
    first: dict[str, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    unsent: int = 0


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the API exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or busy starting
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {within} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def fuzz_target(
    pg: EmbeddedPostgres,
    temporal_env: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[FuzzTarget]:
    """`orderflow api` and `orderflow worker` on a free port, their own task queue and their own
    database: the fuzzer replaces routing rules, promotions and users as admin may, and no
    other test may see that."""
    logs = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    database = f"fuzz_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        f"host={pg.host} port={pg.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = pg.url.rsplit("/", 1)[0] + f"/{database}"
    upgrade(url)
    env = {
        **os.environ,
        "ORDERFLOW_DATABASE_URL": url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "ORDERFLOW_TASK_QUEUE": f"fuzz-{uuid.uuid4().hex[:8]}",
        "ORDERFLOW_HOST": "127.0.0.1",
        "ORDERFLOW_SECRET_KEY": "fuzz-secret-key-for-channel-webhooks",
        "ORDERFLOW_CARRIER_TRANSIT_SECONDS": "0",
        "ORDERFLOW_DELIVERY_POLL_SECONDS": "0.5",
        "ORDERFLOW_LOG_LEVEL": "WARNING",
    }
    made = subprocess.run(
        [BIN / "orderflow", "users", "create", f"fuzz-{port}", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    api_log, worker_log = logs / "api.log", logs / "worker.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with api_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [BIN / "orderflow", "api", "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        with worker_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [BIN / "orderflow", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            )
        base_url = f"http://127.0.0.1:{port}"
        _wait_for(f"{base_url}/openapi.json", procs[0], api_log)
        target = FuzzTarget(base_url=base_url, token=token, api_log=api_log)
        yield target
        _report(request, target)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _report(request: pytest.FixtureRequest, target: FuzzTarget) -> None:
    """How many cases were sent, per operation and per status: the numbers a run is judged by."""
    summary = {
        "cases": sum(target.sent.values()),
        "operations": len(target.sent),
        "seconds": round(time.monotonic() - target.started, 1),
        "not_sent_over_budget": target.unsent,
        "statuses": dict(sorted(target.statuses.items())),
        "per_operation": dict(sorted(target.sent.items())),
    }
    line = (
        f"fuzz: {summary['cases']} cases over {summary['operations']} operations in "
        f"{summary['seconds']} s; statuses {summary['statuses']}"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    if path := os.environ.get("ORDERFLOW_FUZZ_REPORT"):
        Path(path).write_text(json.dumps(summary, indent=2))


# The document the live API serves is built by the same code: loading it here, without the
# services, gives pytest one test per operation to collect.
OPENAPI = create_app(Settings(database_url="postgresql+psycopg://fuzz@127.0.0.1/fuzz")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
OPERATIONS = sum(len(methods) for methods in OPENAPI["paths"].values())
# Each operation's share of the time budget, so that a long run reaches every one of them.
SLICE = SECONDS / OPERATIONS


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    """No server error, declared status codes and bodies, for valid and invalid requests."""
    label = case.operation.label
    first = fuzz_target.first.setdefault(label, time.monotonic())
    if time.monotonic() - first > SLICE:
        fuzz_target.unsent += 1
        return
    # The admin token replaces any Authorization the generator made up (a random bearer
    # token is a 401 that tests nothing past authentication).
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzz_target.token}"}
    try:
        response = case.call_and_validate(base_url=fuzz_target.base_url, checks=CHECKS, timeout=30)
    except Exception as err:
        err.add_note(f"API log (last lines):\n{fuzz_target.api_log.read_text()[-4000:]}")
        raise
    fuzz_target.sent[label] += 1
    fuzz_target.statuses[response.status_code] += 1
