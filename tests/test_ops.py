"""`orderflow stuck`: which orders stand still and why, from PostgreSQL and Temporal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from activities.shipping import SimulatedCarrier
from db.models import Order
from services.stuck import find_stuck
from tests.utils import Stack
from workers.main import order_worker


async def test_stuck_orders_say_why_and_a_cancel_cuts_a_failing_booking_short(api_stack: Stack):
    stack = api_stack
    down = SimulatedCarrier(transit_seconds=0, mode="down")
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=down):
        tight = await stack.customer(limit="100.00")
        customer = await stack.customer()
        sku = await stack.product(price="10.00", stock=3)
        waiting = (await stack.order(tight, [(sku, 20)])).json()["id"]  # over the limit
        ship = (await stack.order(customer, [(sku, 1)])).json()["id"]
        short = (await stack.order(customer, [(sku, 5)])).json()["id"]
        await stack.wait_status(waiting, "awaiting_approval")
        await stack.wait_status(short, "backordered")
        await stack.wait_status(ship, "packed")
        async with stack.sessions() as s:  # stored, but its workflow never started
            lost = f"SO-LOST-{uuid.uuid4().hex[:6]}"
            s.add(
                Order(
                    id=lost,
                    customer_code=customer,
                    channel="api",
                    status="received",
                    subtotal=Decimal(1),
                    order_discount=Decimal(0),
                    total=Decimal(1),
                    currency="CNY",
                    ship_to={},
                    price_rules_version="t",
                    created_by="t",
                    # Older than the recovery's window: a person must look at it.
                    created_at=datetime.now(UTC) - timedelta(hours=1),
                )
            )
            await s.commit()

        why: dict[str, str] = {}
        for _ in range(100):
            rows = await find_stuck(
                stack.sessions, stack.client, stack.settings, timedelta(0), limit=5000
            )
            why = {r.order_id: r.why for r in rows}
            if "failing" in why.get(ship, ""):
                break
            await asyncio.sleep(0.2)
        assert why[waiting].startswith("waits for credit_controller (level 1): exposure")
        assert why[short] == f"short of stock: {sku} x3"  # it holds the other 2 it needs
        assert why[ship].startswith("shipping.book is failing (attempt ")
        assert "booking service unavailable" in why[ship]
        assert why[lost].startswith("no workflow")
        link = next(r.link for r in rows if r.order_id == ship)
        assert link.endswith(f"/namespaces/default/workflows/order-{ship}")
        only = await find_stuck(
            stack.sessions,
            stack.client,
            stack.settings,
            timedelta(0),
            status="backordered",
            limit=5000,
        )
        assert short in {r.order_id for r in only} and waiting not in {r.order_id for r in only}
        assert ship not in {
            r.order_id
            for r in await find_stuck(
                stack.sessions, stack.client, stack.settings, timedelta(hours=1)
            )
        }

        # The carrier stays down: a cancel interrupts the retrying booking and undoes it all.
        r = await stack.post(f"/orders/{ship}/cancel", {"reason": "carrier down"}, role="sales")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        order = await stack.wait_status(ship, "cancelled")
        undone = [e["detail"] for e in order["timeline"] if e["kind"] == "compensation"]
        assert [d.split(" ")[0] for d in undone] == ["0", "pick", "released"]
        stock = (await stack.get(f"/inventory/{sku}")).json()
        assert stock["reserved"] == 2 and stock["on_hand"] == 3  # the backorder holds 2 of 5
        for order_id in (waiting, short):
            await stack.post(f"/orders/{order_id}/cancel", {"reason": "test over"}, role="sales")
        await stack.wait_status(short, "cancelled")
        stock = (await stack.get(f"/inventory/{sku}")).json()
        assert stock["reserved"] == 0 and stock["on_hand"] == 3


def test_stuck_cli_parses_durations_and_prints_a_table(api_stack: Stack, temporal_env):
    env = {
        **os.environ,
        "ORDERFLOW_DATABASE_URL": api_stack.settings.resolved_database_url,
        "TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
    }
    ok = subprocess.run(
        [sys.executable, "-m", "orderflow.cli", "stuck", "--older-than", "3d"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "not moved" in ok.stdout or "no open order" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "orderflow.cli", "stuck", "--older-than", "soon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not a duration" in bad.stderr


async def test_carrier_refusal_holds_the_order_for_ops_to_retry(api_stack: Stack):
    stack = api_stack
    carrier = SimulatedCarrier(transit_seconds=0, mode="fail_permanent")
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=carrier):
        customer = await stack.customer()
        sku = await stack.product(stock=5)
        order_id = (await stack.order(customer, [(sku, 2)])).json()["id"]
        for _ in range(100):
            alerts = [
                a
                for a in (await stack.get("/alerts")).json()
                if a["order_id"] == order_id and a["kind"] == "carrier_failed"
            ]
            if alerts:
                break
            await asyncio.sleep(0.1)
        assert alerts and "retry-shipping" in alerts[0]["summary"]
        assert (await stack.get(f"/orders/{order_id}")).json()["status"] == "packed"
        rows = await find_stuck(
            stack.sessions, stack.client, stack.settings, timedelta(0), limit=5000
        )
        held = next(r.why for r in rows if r.order_id == order_id)
        assert held.startswith("carrier booking on hold:") and "carrier refused" in held
        assert (
            await stack.post(f"/orders/{order_id}/retry-shipping", {}, role="sales")
        ).status_code == 403

        carrier.mode = "normal"  # ops fixed the account with the carrier
        r = await stack.post(f"/orders/{order_id}/retry-shipping", {}, role="ops")
        assert r.status_code == 200, r.text
        order = await stack.wait_status(order_id, "completed")
        assert any("asked to retry the booking" in e["detail"] for e in order["timeline"])
        again = await stack.post(f"/orders/{order_id}/retry-shipping", {}, role="ops")
        assert again.status_code == 409
