"""The worker process killed with SIGKILL while carrier bookings are in flight, and stopped
with SIGTERM (a deploy): `orderflow up` restarts it, every order completes exactly once,
and the carrier books each shipment once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.heal_stack import UpStack, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    # Every booking takes 3 s at the carrier: plenty of them are in flight at any moment.
    stack = UpStack(
        Path(tmp_path_factory.mktemp("crash")) / "home",
        ORDERFLOW_CARRIER_DELAY_SECONDS="3",
        ORDERFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS="20",
    )
    stack.start()
    yield stack
    stack.stop()


def _booking_in_flight(up: UpStack, ids: list[str]) -> bool:
    """A booking call has reached the carrier and not returned yet (ledger line, no
    shipment recorded)."""
    booked = {o for (o, _n, _t) in up.carrier_calls()}
    return any(s == "packed" and o in booked for o, s in up.statuses(ids).items())


def test_worker_killed_mid_booking_heals_and_books_once(up: UpStack):
    customer, sku = up.setup()
    ids = up.orders(customer, sku, 12)
    wait_for("a booking in flight", lambda: _booking_in_flight(up, ids), 60, 0.1)
    pid, killed_at = up.kill("worker")
    healed = up.heal_time("worker", pid, killed_at)
    print(f"\nheal: worker SIGKILL -> restarted and healthy in {healed:.1f} s")
    up.wait_all_completed(ids)
    done = time.monotonic() - killed_at
    print(f"heal: worker SIGKILL -> the orders in flight all completed {done:.1f} s after")
    calls = up.assert_exactly_once(ids, sku)
    # The kill cut at least one booking call short: the carrier heard it again after the
    # restart, with the same key, and booked it once.
    assert max(calls.values()) >= 2, calls
    assert "worker killed by SIGKILL" in up.supervisor_log()
    assert "worker is back" in up.supervisor_log()


def test_sigterm_lets_bookings_in_flight_finish(up: UpStack):
    before = up.carrier_calls()
    customer, sku = up.setup()
    ids = up.orders(customer, sku, 6)
    wait_for("a booking in flight", lambda: _booking_in_flight(up, ids), 60, 0.1)
    pid = up.pid("worker")
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # what a deploy (or Ctrl-C on `up`) sends
    wait_for("the worker to exit", lambda: up.pid("worker") != pid, 60)
    log = (up.home / "worker.log").read_text()
    assert "activities in flight get up to 20 s to finish" in log
    assert "worker stopped" in log
    up.wait_all_completed(ids)
    calls = up.carrier_calls() - before
    # Graceful: every booking call finished in the old worker; none was made twice.
    mine = {k: v for k, v in calls.items() if k[0] in ids}
    assert mine and set(mine.values()) == {1}, mine
    up.assert_exactly_once(ids, sku)
    assert "worker exited with code 0" in up.supervisor_log()
