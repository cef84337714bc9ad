"""On-call alerts: raised once, delivered to a webhook with retries, never paged twice;
and approval decisions arriving as signals (Temporal UI / CLI)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activities.shipping import SimulatedCarrier
from db.models import Alert
from domain.approvals import Decision
from tests.utils import Stack
from workers.main import order_worker


class Receiver:
    """A tiny webhook receiver: fails the first delivery, accepts the rest, dedups by key."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.accepted: dict[str, dict] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.requests.append(body)
                ok = len(receiver.requests) > 1
                if ok:
                    receiver.accepted.setdefault(body["dedup_key"], body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_failing_carrier_pages_once_and_the_webhook_gets_one_alert(
    api_stack: Stack, receiver: Receiver
):
    stack = api_stack
    settings = stack.settings.model_copy(
        update={"alert_webhook_url": receiver.url, "alert_after_attempts": 1}
    )
    flaky = SimulatedCarrier(transit_seconds=0, mode="fail_transient")  # fails attempts 1, 2
    customer = await stack.customer()
    sku = await stack.product()
    async with order_worker(stack.client, stack.sessions, settings, carrier=flaky):
        order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
        await stack.wait_status(order_id, "completed", within=60)
        for _ in range(100):
            if receiver.accepted:
                break
            await asyncio.sleep(0.1)
    assert await stack.count(Alert, Alert.order_id == order_id) == 1
    (alert,) = [a for a in (await stack.get("/alerts")).json() if a["order_id"] == order_id]
    assert alert["kind"] == "activity_failing" and "shipping.book" in alert["summary"]
    assert alert["delivered_at"] is not None
    # The first delivery failed and was retried with the same key; the receiver kept one.
    assert len(receiver.requests) == 2
    assert {r["dedup_key"] for r in receiver.requests} == {alert["dedup_key"]}
    assert list(receiver.accepted) == [alert["dedup_key"]]
    body = receiver.requests[-1]
    assert body["text"].startswith("[critical]")
    assert body["alerts"][0]["labels"]["alertname"] == "activity_failing"

    acked = await stack.post(f"/alerts/{alert['id']}/ack", {}, role="ops")
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert (await stack.post(f"/alerts/{alert['id']}/ack", {}, role="sales")).status_code == 403
    open_ids = {a["id"] for a in (await stack.get("/alerts", params={"status": "open"})).json()}
    assert alert["id"] not in open_ids


async def test_a_decision_signal_counts_only_as_an_ops_override_recorded_as_such(stack: Stack):
    """Whoever reaches Temporal can signal; what the signal claims (`by`, `role`) is not
    trusted: it is recorded as an override via Temporal, never as the person it names."""
    customer = await stack.customer(limit="1.00")
    sku = await stack.product()
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    # Ops find it in Temporal visibility by the role it waits for.
    query = f'AwaitingRole="credit_controller" AND CustomerCode="{customer}"'
    for _ in range(50):
        found = [w.id async for w in stack.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [f"order-{order_id}"]
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    await handle.signal(
        "decide_signal",
        Decision(decision="approve", role="credit_controller", by="ann", comment="from the UI"),
    )
    order = await stack.wait_status(order_id, "completed")
    (approval,) = order["approvals"]
    assert approval["status"] == "approved"
    assert approval["decided_by"] == "override via Temporal signal"
    assert approval["comment"] == "from the UI [sent as ann (credit_controller)]"
    notes = [e["detail"] for e in order["timeline"] if e["kind"] == "note"]
    assert any("ops override via Temporal signal, sent as ann" in n for n in notes), notes


async def test_a_decision_signal_with_nothing_pending_is_noted_and_ignored(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product(stock=0)
    order_id = (await stack.order(customer, [(sku, 1)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    handle = stack.client.get_workflow_handle(f"order-{order_id}")
    await handle.signal("decide_signal", Decision(decision="approve", role="ops", by="mallory"))
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        order = (await stack.get(f"/orders/{order_id}")).json()
        notes = [e["detail"] for e in order["timeline"] if e["kind"] == "note"]
        if any("ignored decision signal sent as mallory (ops)" in n for n in notes):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the ignored signal was not noted: {order['timeline']}")
    assert order["status"] == "backordered" and order["approvals"] == []
    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "test over"}, role="sales")
    assert r.status_code == 200, r.text
