"""Supervision for `orderflow up`: every child is watched and restarted with backoff.

Hand-written rather than a process manager (supervisord, circus): the children are not
plain commands. PostgreSQL restarts through its own crash recovery after a stale
postmaster.pid is cleared and must answer before anything else is started; Temporal must
open its ports; each restart is recorded as an alert through Temporal itself; and `up`
must stay one foreground process that Ctrl-C stops. That is a loop of a hundred lines over
the start functions `up` already has, with no daemon, config file or socket to manage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orderflow.embedded import ManagedProcess

if TYPE_CHECKING:  # the supervisor loads Temporal only once it has an alert to send
    from temporalio.client import Client

log = logging.getLogger("orderflow.supervisor")

MAX_CRASHES = 5
CRASH_WINDOW_S = 120.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
# A child that ran this long since its last start is healthy again: backoff starts over.
STABLE_AFTER_S = 60.0


class CrashLoop(RuntimeError):
    """A child kept crashing: the stack stops rather than restart it for ever."""


def exit_reason(returncode: int | None) -> str:
    """'killed by SIGKILL', 'exited with code 1'."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Child:
    """One supervised process: how to start it (and wait until it is ready), where it logs."""

    name: str
    start: Callable[[], ManagedProcess]
    log_file: Path
    stop_timeout: float = 15.0
    # Children started one after another with the same group stop together (the workers
    # and the API: N workers' graceful shutdowns take one period, not N).
    group: str | None = None
    process: ManagedProcess | None = None
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0
    failures_in_a_row: int = 0
    started_at: float = 0.0
    down_since: float | None = None
    restart_at: float | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


@dataclass
class Restart:
    """What happened to a child, for the alert that records it."""

    name: str
    reason: str
    died_at: datetime
    back_at: datetime
    log_file: Path


class Supervisor:
    """Start children in order, restart any that dies, stop them in reverse order."""

    def __init__(
        self,
        say: Callable[[str], None],
        on_restart: Callable[[Restart], None] | None = None,
        *,
        max_crashes: int = MAX_CRASHES,
        window_s: float = CRASH_WINDOW_S,
    ):
        self.say = say
        self.on_restart = on_restart
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.children: list[Child] = []
        self._died_at: dict[str, tuple[datetime, str]] = {}

    def start(self, child: Child) -> None:
        """Start a child now (start-up order is the order of these calls)."""
        child.process = child.start()
        child.started_at = time.monotonic()
        self.children.append(child)

    def check(self) -> None:
        """One look at every child: note the dead, restart those whose backoff is over."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None and not child.alive():
                self._died(child, now)
            if child.restart_at is not None and now >= child.restart_at:
                self._restart(child)
            elif child.alive() and now - child.started_at >= STABLE_AFTER_S:
                child.failures_in_a_row = 0

    def run(self, stopping: Callable[[], bool], interval: float = 0.5) -> None:
        """Watch until `stopping()`; raises CrashLoop when a child keeps crashing."""
        while not stopping():
            self.check()
            time.sleep(interval)

    def stop(self) -> None:
        """Stop in reverse start order (the API and workers before Temporal, Temporal before
        PostgreSQL); the children of one group at the same time."""
        batches: list[list[Child]] = []
        for child in reversed(self.children):
            if batches and child.group is not None and batches[-1][0].group == child.group:
                batches[-1].append(child)
            else:
                batches.append([child])
        for batch in batches:
            stoppers = [
                threading.Thread(target=_stop_quietly, args=(c,), name=f"stop-{c.name}")
                for c in batch
            ]
            for t in stoppers:
                t.start()
            for t in stoppers:
                t.join()

    def _died(self, child: Child, now: float) -> None:
        assert child.process is not None
        reason = exit_reason(child.process.proc.returncode)
        # Whatever the dead process left in its group (PostgreSQL backends, a UI server)
        # goes too, so the restart finds its ports and files free.
        child.process.reap_group()
        self._note_crash(child, now, reason)

    def _note_crash(self, child: Child, now: float, reason: str) -> None:
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.window_s:
            child.crashes.popleft()
        if child.down_since is None:
            child.down_since = now
            self._died_at[child.name] = (datetime.now().astimezone(), reason)
        if len(child.crashes) >= self.max_crashes:
            raise CrashLoop(
                f"{child.name} crashed {len(child.crashes)} times in "
                f"{self.window_s / 60:.0f} minutes ({reason}); see its log: {child.log_file}"
            )
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**child.failures_in_a_row)
        child.failures_in_a_row += 1
        child.restart_at = now + delay
        self.say(
            f"{child.name} {reason} at {_clock()}; restarting in {delay:.0f} s "
            f"(log: {child.log_file})"
        )

    def _restart(self, child: Child) -> None:
        child.restart_at = None
        try:
            child.process = child.start()
        except Exception as err:  # a failed start is one more crash, with backoff
            if child.process is not None:
                child.process.stop(timeout=5)
            self._note_crash(child, time.monotonic(), f"failed to restart: {err}")
            return
        now = time.monotonic()
        child.started_at = now
        child.restarts += 1
        down = now - (child.down_since or now)
        child.down_since = None
        died_at, reason = self._died_at.pop(child.name)
        self.say(
            f"{child.name} is back at {_clock()} (pid {child.process.proc.pid}, "
            f"down {down:.1f} s)"
        )
        if self.on_restart is not None:
            self.on_restart(
                Restart(child.name, reason, died_at, datetime.now().astimezone(), child.log_file)
            )


def _stop_quietly(child: Child) -> None:
    if child.process is not None:
        with contextlib.suppress(Exception):
            child.process.stop(timeout=child.stop_timeout)


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


class AlertSender:
    """Records each restart as an alert (the AlertWorkflow: stored in the alerts table and
    sent to the webhook) from a thread of its own, retrying until Temporal takes it: the
    restarted child may be Temporal itself."""

    def __init__(self, address: str, namespace: str, task_queue: str):
        self.address = address
        self.namespace = namespace
        self.task_queue = task_queue
        self._queue: queue.Queue[Restart | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restart-alerts", daemon=True)
        self._thread.start()

    def __call__(self, restart: Restart) -> None:
        self._queue.put(restart)

    def close(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        from services.temporal import API_TEMPORAL_RETRY, connect

        client = None
        while not self._stopping.is_set():
            restart = await asyncio.to_thread(self._queue.get)
            if restart is None:
                return
            while not self._stopping.is_set():
                try:
                    if client is None:
                        client = await connect(
                            self.address, self.namespace, retry_config=API_TEMPORAL_RETRY
                        )
                    await self._send(client, restart)
                    break
                except Exception as err:
                    log.warning("restart alert for %s not recorded yet: %s", restart.name, err)
                    await asyncio.sleep(2)

    async def _send(self, client: Client, restart: Restart) -> None:
        from temporalio.common import WorkflowIDConflictPolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        from domain.alerts import Alert
        from workflows.alert import AlertWorkflow, alert_workflow_id

        stamp = restart.died_at.isoformat(timespec="seconds")
        alert = Alert(
            dedup_key=f"restart:{restart.name}:{stamp}",
            kind="process_restarted",
            severity="warning",
            summary=f"{restart.name} {restart.reason} at {stamp}; restarted at "
            f"{restart.back_at.isoformat(timespec='seconds')}",
            detail=f"log: {restart.log_file}",
        )
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await client.start_workflow(
                AlertWorkflow.run,
                alert,
                id=alert_workflow_id(alert.dedup_key),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
