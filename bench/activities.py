"""`python -m bench.activities`: the CPU the worker spends in a touchless order's combined
steps (issue 18), without Temporal.

Creates N touchless orders the way intake does (services/intake.py), then calls the three
combined local activities of each directly, in the order the workflow does, with the inputs
it would pass: `fulfil.first_pass`, `fulfil.ship_and_invoice` (after the simulated carrier's
booking), `fulfil.deliver_and_complete`. Each phase runs for every order before the next
starts, so a phase's numbers are its own. Per phase it reports the CPU of this process
(time.process_time; of it, the kernel's: the socket calls) per order, the SQL statements
per order (SQLAlchemy's before_cursor_execute) and, when it started PostgreSQL itself,
PostgreSQL's CPU per order (its processes' CPU times). JSON on stdout.

Without --database-url it starts an embedded PostgreSQL of its own in a temporary directory
(fsync off, like the tests) and migrates it. `--dump FILE` writes what the orders left in the
database, without ids and times, so two versions of the activities can be compared row by row
(a fresh database and the same --seed give the same order ids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.fulfil import FulfilActivities
from activities.shipping import ShippingActivities, SimulatedCarrier
from db.models import Customer, Product
from db.session import SessionFactory, make_engine, make_session_factory
from db.stock import seed as seed_stock
from domain.approvals import AssessRequest
from domain.fulfilment import FirstPass, FirstPassRequest
from domain.orders import OrderIn, OrderLineIn, OrderWorkflowInput, StatusChange
from domain.shipping import DeliveryClose, DeliveryEvent, ShipmentRecord, ShipmentRequest
from domain.status import OrderStatus
from services.config import Settings
from services.intake import _persist, request_hash

PHASES = ("first_pass", "ship_and_invoice", "deliver_and_complete")
SKUS = 5


class Counter:
    def __init__(self) -> None:
        self.statements = 0

    def __call__(self, *_: Any) -> None:
        self.statements += 1


def _pg_cpu(postmaster_pid: int | None) -> float:
    """CPU seconds of the PostgreSQL server so far (postmaster, its live children and the
    children it reaped)."""
    if postmaster_pid is None:
        return 0.0
    import psutil

    root = psutil.Process(postmaster_pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children():
        try:
            c = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += c.user + c.system
    return total


@contextmanager
def _embedded() -> Iterator[tuple[str, int]]:
    from db.migrate import upgrade
    from orderflow.embedded import EmbeddedPostgres, free_port

    with tempfile.TemporaryDirectory(prefix="bench-activities-") as tmp:
        Path(tmp).chmod(0o755)
        server = EmbeddedPostgres(Path(tmp) / "data", "127.0.0.1", free_port(), durable=False)
        server.start()
        try:
            upgrade(server.url)
            pid = int((Path(tmp) / "data" / "postmaster.pid").read_text().split()[0])
            yield server.url, pid
        finally:
            server.stop()


async def _setup(sessions: SessionFactory, run: str, notices: bool) -> tuple[str, list[str]]:
    """A gold customer with room for any order, SKUS products with plenty of stock (as
    `orderflow bench` makes them through the API)."""
    code = f"BENCH-{run}-BIG"
    skus = [f"B{run}-{i}" for i in range(SKUS)]
    async with sessions() as s:
        s.add(
            Customer(
                code=code,
                name="Bench big",
                tier="gold",
                credit_limit=Decimal("999999999999.00"),
                payment_terms_days=30,
                address_line1="1 Bench Road",
                city="Shanghai",
                postal_code="200000",
                country="CN",
                status="active",
                notice_email="bench@example.com" if notices else None,
            )
        )
        for sku in skus:
            s.add(
                Product(
                    sku=sku,
                    name=sku,
                    unit_price=Decimal("10.00"),
                    floor_price=Decimal("5.00"),
                    bin_location=f"Z-{sku[-1]}",
                )
            )
        await s.flush()
        await seed_stock(s, skus, 10_000_000)
        await s.commit()
    return code, skus


async def _orders(
    sessions: SessionFactory,
    settings: Settings,
    customer: str,
    skus: list[str],
    n: int,
    rng: random.Random,
) -> list[OrderWorkflowInput]:
    inputs = []
    for i in range(n):
        body = OrderIn(
            customer_code=customer,
            channel="bench",
            external_ref=f"bench-{i}-{uuid.uuid4().hex[:8]}",
            lines=[OrderLineIn(sku=rng.choice(skus), quantity=rng.randint(1, 5))],
        )
        async with sessions() as s:
            _, inp = await _persist(s, settings, body, request_hash(body), None, None, "bench")
        inputs.append(inp)
    return inputs


class Phases:
    """Runs the three combined steps of each order, phase by phase, measuring each."""

    def __init__(
        self, engine: AsyncEngine, fulfil: FulfilActivities, carrier: SimulatedCarrier
    ) -> None:
        self.counter = Counter()
        event.listen(engine.sync_engine, "before_cursor_execute", self.counter)
        self.fulfil = fulfil
        self.carrier = carrier

    async def first_pass(self, inp: OrderWorkflowInput) -> FirstPass:
        passed = await self.fulfil.first_pass(
            FirstPassRequest(
                assess=AssessRequest(
                    order_id=inp.order_id,
                    routing=inp.routing,
                    overdue_grace_days=inp.overdue_grace_days,
                ),
                ship_partial=inp.allow_partial,
                pick=inp.warehouse_mode != "manual",
            )
        )
        assert passed.prepared is not None and passed.prepared.packed is not None, passed
        return passed

    async def ship(self, inp: OrderWorkflowInput, passed: FirstPass) -> str:
        assert passed.prepared is not None and passed.prepared.packed is not None
        packages = passed.prepared.packed.packages
        booking = await self.carrier.book(
            ShipmentRequest(order_id=inp.order_id, shipment_no=1, packages=packages), 1
        )
        await self.fulfil.ship_and_invoice(
            ShipmentRecord(order_id=inp.order_id, shipment_no=1, booking=booking, packages=packages)
        )
        return booking.tracking_number

    async def deliver(self, inp: OrderWorkflowInput, tracking: str) -> None:
        await self.fulfil.deliver_and_complete(
            DeliveryClose(
                event=DeliveryEvent(
                    tracking_number=tracking, status="delivered", at=datetime.now(UTC)
                ),
                completion=StatusChange(
                    order_id=inp.order_id,
                    status=OrderStatus.COMPLETED,
                    step_key="completed",
                    detail="order complete",
                ),
            )
        )

    async def run(
        self, inputs: list[OrderWorkflowInput], pg_pid: int | None, retry: bool
    ) -> dict[str, dict[str, float]]:
        """Each phase for every order; `retry`: every step twice in a row (a retry after a
        commit whose answer was lost), the second answer the same as the first."""
        out: dict[str, dict[str, float]] = {}
        passes: list[FirstPass] = []
        tracking: list[str] = []

        async def measure(name: str, step: Any) -> None:
            n = len(inputs)
            stmts, cpu, pg = self.counter.statements, time.process_time(), _pg_cpu(pg_pid)
            kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            for i, inp in enumerate(inputs):
                await step(i, inp)
                if retry:
                    await step(i, inp)
            cpu = time.process_time() - cpu
            kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime - kernel
            out[name] = {
                "cpu_ms_per_order": round(cpu * 1000 / n, 3),
                "of_which_kernel_ms": round(kernel * 1000 / n, 3),
                "statements_per_order": round((self.counter.statements - stmts) / n, 2),
            }
            if pg_pid is not None:
                out[name]["pg_cpu_ms_per_order"] = round((_pg_cpu(pg_pid) - pg) * 1000 / n, 3)

        async def fp(i: int, inp: OrderWorkflowInput) -> None:
            passed = await self.first_pass(inp)
            if i < len(passes):
                assert passed == passes[i], (passed, passes[i])
            else:
                passes.append(passed)

        async def sh(i: int, inp: OrderWorkflowInput) -> None:
            number = await self.ship(inp, passes[i])
            if i < len(tracking):
                assert number == tracking[i]
            else:
                tracking.append(number)

        async def dl(i: int, inp: OrderWorkflowInput) -> None:
            await self.deliver(inp, tracking[i])

        await measure("first_pass", fp)
        await measure("ship_and_invoice", sh)
        await measure("deliver_and_complete", dl)
        out["total"] = {k: round(sum(out[p][k] for p in PHASES), 3) for k in out["first_pass"]}
        return out


# What the orders left behind, without generated ids and times (compared across versions).
DUMP = {
    "orders": "SELECT id, status, awaiting_role, failure_reason, total, subtotal, "
    "order_discount, routing_facts FROM orders WHERE customer_code = :c ORDER BY id",
    "order_lines": "SELECT l.order_id, line_no, sku, quantity, reserved_qty, shipped_qty, "
    "unit_price FROM order_lines l JOIN orders o ON o.id = l.order_id "
    "WHERE o.customer_code = :c ORDER BY 1, 2",
    "order_events": "SELECT e.order_id, step_key, e.status, kind, actor, detail "
    "FROM order_events e JOIN orders o ON o.id = e.order_id WHERE o.customer_code = :c "
    "ORDER BY e.id",
    "order_facts": "SELECT order_id, channel, customer_code, status, validated, routed, "
    "approved, backordered, dated_deliveries, on_time, completed_at IS NOT NULL, "
    "ordered_qty, shipped_qty, compensations FROM order_facts WHERE customer_code = :c "
    "ORDER BY order_id",
    "order_steps": "SELECT order_id, status FROM order_steps WHERE customer_code = :c "
    "ORDER BY order_id, id",
    "customer_notices": "SELECT n.order_id, event, event_key, receiver, address "
    "FROM customer_notices n JOIN orders o ON o.id = n.order_id WHERE o.customer_code = :c "
    "ORDER BY 1, 2, 3, 4",
    "reservations": "SELECT r.order_id, r.sku, r.quantity, r.status, r.seq, r.shipment_no "
    "FROM reservations r JOIN orders o ON o.id = r.order_id WHERE o.customer_code = :c "
    "ORDER BY 1, 2, 5",
    "pick_lists": "SELECT p.order_id, wave, attempt, lines, p.status, packages "
    "FROM pick_lists p JOIN orders o ON o.id = p.order_id WHERE o.customer_code = :c "
    "ORDER BY 1, 2, 3",
    "shipments": "SELECT s.order_id, shipment_no, tracking_number, carrier, s.status, "
    "packages, delivered_at IS NOT NULL FROM shipments s JOIN orders o ON o.id = s.order_id "
    "WHERE o.customer_code = :c ORDER BY 1, 2",
    "invoices": "SELECT number, order_id, customer_code, shipment_no, amount, due_date, "
    "credited FROM invoices WHERE customer_code = :c ORDER BY 1",
    "receivables": "SELECT invoice_number, customer_code, amount, open_amount, due_date "
    "FROM receivables WHERE customer_code = :c ORDER BY 1",
    "stock": "SELECT sku, on_hand, reserved, shipped, received FROM stock "
    "WHERE sku LIKE :p ORDER BY 1",
    "stock_movements": "SELECT sku, kind, key LIKE 'ship:reservation:%', quantity, actor, "
    "reason FROM stock_movements WHERE sku LIKE :p ORDER BY sku, id",
}


async def _dump(sessions: SessionFactory, customer: str, run: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    async with sessions() as s:
        for table, sql in DUMP.items():
            rows = await s.execute(text(sql), {"c": customer, "p": f"B{run}-%"})
            out[table] = [[str(v) for v in row] for row in rows]
    return out


async def main(args: argparse.Namespace, url: str, pg_pid: int | None) -> dict[str, Any]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(database_url=url, task_queue="bench-activities")
    carrier = SimulatedCarrier(transit_seconds=0.0)
    shipping = ShippingActivities(sessions, settings, carrier)
    fulfil = FulfilActivities(sessions, settings, shipping)
    rng = random.Random(args.seed)
    run = args.run or uuid.uuid4().hex[:6]
    try:
        customer, skus = await _setup(sessions, run, args.notices)
        phases = Phases(engine, fulfil, carrier)
        # Warm-up (statement caches, pool, imports), not measured.
        warm = await _orders(sessions, settings, customer, skus, args.warmup, rng)
        await phases.run(warm, None, retry=False)
        inputs = await _orders(sessions, settings, customer, skus, args.orders, rng)
        result: dict[str, Any] = {"orders": args.orders, "warmup": args.warmup}
        result.update(await phases.run(inputs, pg_pid, retry=args.retry))
        if args.dump:
            result["dump"] = await _dump(sessions, customer, run)
        return result
    finally:
        await engine.dispose()


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--database-url", help="default: an embedded PostgreSQL of its own")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--run", help="suffix of the bench customer and SKUs (default: random)")
    p.add_argument("--notices", action="store_true", help="the customer has a notice e-mail")
    p.add_argument(
        "--retry",
        action="store_true",
        help="every step twice in a row (its numbers include the retries)",
    )
    p.add_argument("--dump", help="write the rows the orders left to this JSON file")
    args = p.parse_args()
    if args.database_url:
        result = asyncio.run(main(args, args.database_url, None))
    else:
        with _embedded() as (url, pid):
            result = asyncio.run(main(args, url, pid))
    dump = result.pop("dump", None)
    if dump is not None:
        Path(args.dump).write_text(json.dumps(dump, indent=1, default=str))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    cli()
