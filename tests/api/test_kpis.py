"""KPIs on a hand-seeded history, checked against numbers worked out by hand; and the KPI
facts the status writer keeps as an order moves, checked against the same facts recomputed
from its timeline."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from openpyxl import load_workbook
from sqlalchemy import text

from db import repo
from db.kpis import KpiFilter, compute_kpis, refresh_facts
from db.models import Approval, Order, OrderEvent, OrderLine, RejectedAttempt
from domain.orders import StatusChange
from domain.status import OrderStatus
from tests.utils import Stack

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
TOUCHLESS = [
    ("received", 0),
    ("validated", 10),
    ("approved", 10),
    ("reserved", 20),
    ("picking", 30),
    ("packed", 40),
    ("shipped", 100),
    ("invoiced", 100),
    ("delivered", 3600),
    ("completed", 3600),
]
# Delivered 2 h after receipt on 10 Nov: one day after the requested 9 Nov, so late.
APPROVED = [
    ("received", 0),
    ("validated", 10),
    ("awaiting_approval", 10),
    ("approved", 610),
    ("reserved", 620),
    ("picking", 630),
    ("packed", 640),
    ("shipped", 700),
    ("invoiced", 700),
    ("delivered", 7200),
    ("completed", 7200),
]


async def _seed(stack: Stack, channel: str, customer: str, sku: str) -> None:
    seeded: list[str] = []

    async def order(events, status, *, shipped, created=T0, requested=None, reason=None, extra=()):
        oid = f"K-{uuid.uuid4().hex[:10]}"
        s.add(
            Order(
                id=oid,
                customer_code=customer,
                channel=channel,
                status=status,
                subtotal=Decimal(10),
                order_discount=Decimal(0),
                total=Decimal(10),
                currency="CNY",
                ship_to={},
                price_rules_version="t",
                created_by="kpi",
                requested_delivery_date=requested,
                failure_reason=reason,
                created_at=created,
            )
        )
        await s.flush()
        s.add(
            OrderLine(
                order_id=oid,
                line_no=1,
                sku=sku,
                quantity=10,
                list_price=Decimal(1),
                unit_price=Decimal(1),
                line_total=Decimal(10),
                price_rule="list",
                shipped_qty=shipped,
            )
        )
        for i, (st, sec) in enumerate(events):
            s.add(
                OrderEvent(
                    order_id=oid,
                    step_key=f"{st}:{i}",
                    status=st,
                    kind="status",
                    at=created + timedelta(seconds=sec),
                )
            )
        for kind, sec in extra:
            s.add(
                OrderEvent(
                    order_id=oid,
                    step_key=f"{kind}:{sec}",
                    status=None,
                    kind=kind,
                    at=created + timedelta(seconds=sec),
                )
            )
        seeded.append(oid)
        return oid

    async with stack.sessions() as s:
        await order(TOUCHLESS, "completed", shipped=10, requested=date(2026, 11, 20))
        o2 = await order(APPROVED, "completed", shipped=10, requested=date(2026, 11, 9))
        s.add(
            Approval(
                order_id=o2,
                level=1,
                role="credit_controller",
                status="approved",
                requested_at=T0 + timedelta(seconds=10),
                decided_at=T0 + timedelta(seconds=610),
            )
        )
        await order(
            [
                ("received", 0),
                ("validated", 5),
                ("approved", 5),
                ("backordered", 6),
                ("cancelled", 50),
            ],
            "cancelled",
            shipped=0,
            extra=[("compensation", 49)],
        )
        await order(
            [("received", 0), ("rejected", 1)],
            "rejected",
            shipped=0,
            reason="validation: customer C is on_hold",
        )
        await order(TOUCHLESS, "completed", shipped=10, created=T0 - timedelta(days=9))
        s.add(
            RejectedAttempt(
                actor="kpi",
                channel=channel,
                customer_code=customer,
                body={},
                problems=[],
                at=T0 + timedelta(hours=1),
            )
        )
        # Written by hand, not by the status writer: the KPI facts from these timelines.
        await refresh_facts(s, seeded)
        await s.commit()


async def test_kpis_match_hand_checked_numbers(stack: Stack):
    channel = f"kpi-{uuid.uuid4().hex[:6]}"
    customer = await stack.customer()
    sku = await stack.product()
    await _seed(stack, channel, customer, sku)
    params = {"from": "2026-11-09", "to": "2026-11-15", "channel": channel}
    k = (await stack.get("/kpis", params=params)).json()
    assert "orders_received" in k, k
    assert k["orders_received"] == 5  # 4 orders in the window + 1 refused at entry
    assert (k["orders_completed"], k["orders_rejected"], k["orders_cancelled"]) == (2, 1, 1)
    assert k["entry_error_rate"] == 0.4  # (1 refused + 1 rejected by validation) / 5
    assert k["first_pass_rate"] == 0.6667  # 2 of the 3 validated never waited
    assert k["on_time_delivery_rate"] == 0.5  # one delivered by its date, one after
    assert k["fill_rate"] == 0.6667  # 20 shipped of 30 ordered on approved orders
    assert k["backorder_rate"] == 0.3333
    assert k["compensations"] == 1
    assert k["end_to_end_seconds"] == {"count": 2, "median": 5400.0, "p95": 7020.0}
    assert k["approval_wait_seconds"] == {
        "credit_controller": {"count": 1, "median": 600.0, "p95": 600.0}
    }
    assert k["step_seconds"]["awaiting_approval"]["median"] == 600.0
    assert k["step_seconds"]["shipped"]["count"] == 2

    only_customer = await stack.get("/kpis", params={**params, "customer_code": "NOBODY"})
    assert only_customer.json()["orders_received"] == 0
    assert only_customer.json()["first_pass_rate"] is None

    xlsx = await stack.get("/kpis.xlsx", params=params)
    assert xlsx.status_code == 200
    wb = load_workbook(io.BytesIO(xlsx.content))
    rows = {r[0]: r[1] for r in wb["KPIs"].iter_rows(values_only=True)}
    assert rows["first_pass_rate"] == 0.6667 and rows["orders_received"] == 5
    assert wb["Approval waits"]["A2"].value == "credit_controller"


FACTS_ROW = text("SELECT * FROM order_facts WHERE order_id = :id")
STEPS_ROWS = text(
    "SELECT status, seconds FROM order_steps WHERE order_id = :id ORDER BY status, seconds"
)


async def test_status_writer_keeps_the_facts_the_timeline_gives(stack: Stack):
    """An order moved by the real writers (open_order, apply_status, a compensation), one
    transaction per step as the activities do: its facts and steps are exactly what
    recomputing them from its timeline gives, and so are the KPIs."""
    channel = f"kpf-{uuid.uuid4().hex[:6]}"
    customer = await stack.customer()
    sku = await stack.product()
    oid = f"K-{uuid.uuid4().hex[:10]}"
    async with stack.sessions() as s:
        order = Order(
            id=oid,
            customer_code=customer,
            channel=channel,
            subtotal=Decimal(30),
            order_discount=Decimal(0),
            total=Decimal(30),
            currency="CNY",
            ship_to={},
            price_rules_version="t",
            created_by="kpi",
            requested_delivery_date=datetime.now(UTC).date() + timedelta(days=3),
        )
        await repo.open_order(s, order, actor="kpi", detail="")
        s.add(
            OrderLine(
                order_id=oid,
                line_no=1,
                sku=sku,
                quantity=30,
                list_price=Decimal(1),
                unit_price=Decimal(1),
                line_total=Decimal(30),
                price_rule="list",
            )
        )
        await s.commit()
    path = [
        "validated",
        "awaiting_approval",
        "awaiting_approval",  # a second approval level stays put
        "approved",
        "backordered",
        "reserved",
        "picking",
        "packed",
        "shipped",
        "invoiced",
        "delivered",
        "completed",
    ]
    for i, status in enumerate(path):
        async with stack.sessions() as s:
            if status == "shipped":
                await s.execute(
                    text("UPDATE order_lines SET shipped_qty = 20 WHERE order_id = :id"),
                    {"id": oid},
                )
            if status == "picking":
                await repo.record_event(s, oid, "undo:x", status=None, kind="compensation")
            change = StatusChange(order_id=oid, status=OrderStatus(status), step_key=f"s{i}")
            assert await repo.apply_status(s, change) is not None
            # A retried step writes nothing, facts included.
            assert await repo.apply_status(s, change) is None
            await s.commit()
    f = KpiFilter(channel=channel)
    async with stack.sessions() as s:
        kept = dict((await s.execute(FACTS_ROW, {"id": oid})).mappings().one())
        kept_steps = (await s.execute(STEPS_ROWS, {"id": oid})).all()
        kept_kpis = await compute_kpis(s, f)
        await refresh_facts(s, [oid])
        rebuilt = dict((await s.execute(FACTS_ROW, {"id": oid})).mappings().one())
        rebuilt_steps = (await s.execute(STEPS_ROWS, {"id": oid})).all()
        rebuilt_kpis = await compute_kpis(s, f)
        await s.rollback()
    assert kept == rebuilt
    assert kept_steps == rebuilt_steps and len(kept_steps) == len(path)
    assert kept_kpis == rebuilt_kpis
    assert (kept["status"], kept["routed"], kept["backordered"]) == ("completed", True, True)
    assert (kept["ordered_qty"], kept["shipped_qty"], kept["compensations"]) == (30, 20, 1)
    assert (kept["dated_deliveries"], kept["on_time"]) == (1, 1)
    assert kept_kpis["orders_completed"] == 1 and kept_kpis["fill_rate"] == 0.6667
    assert kept_kpis["step_seconds"]["awaiting_approval"]["count"] == 2
    assert kept_kpis["end_to_end_seconds"]["count"] == 1


async def _past_order(stack: Stack, channel: str, customer: str, created: datetime) -> str:
    oid = f"K-{uuid.uuid4().hex[:10]}"
    async with stack.sessions() as s:
        s.add(
            Order(
                id=oid,
                customer_code=customer,
                channel=channel,
                status="received",
                subtotal=Decimal(10),
                order_discount=Decimal(0),
                total=Decimal(10),
                currency="CNY",
                ship_to={},
                price_rules_version="t",
                created_by="kpi",
                created_at=created,
            )
        )
        await s.flush()
        s.add(OrderEvent(order_id=oid, step_key="r", status="received", kind="status", at=created))
        await refresh_facts(s, [oid])
        await s.commit()
    return oid


async def test_closed_days_rolled_up_agree_with_the_facts(stack: Stack):
    """A window of closed days reads the rollup (counts exact, percentiles within a 2 %
    bucket); a customer's window reads the facts exactly: the same orders give the same
    counts, and percentiles within 2 %."""
    channel = f"kpr-{uuid.uuid4().hex[:6]}"
    customer = await stack.customer()
    day = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=4)
    oid = await _past_order(stack, channel, customer, day)
    seconds = [0.0, 0.0015, 1.0, 1.001, 7.5, 60.25, 3600.0] + [
        (k * 7919 % 1000) * 37.3 + k / 7 for k in range(400)
    ]
    async with stack.sessions() as s:
        for v in seconds:
            await s.execute(
                text(
                    "INSERT INTO order_steps (order_id, created_at, channel, customer_code, "
                    "status, seconds) VALUES (:id, :at, :ch, :cu, 'picking', :v)"
                ),
                {"id": oid, "at": day, "ch": channel, "cu": customer, "v": v},
            )
        await s.commit()
    window = {"from": (day - timedelta(days=1)).date(), "to": day.date()}
    async with stack.sessions() as s:
        rolled = await compute_kpis(s, KpiFilter(window["from"], window["to"], channel=channel))
        await s.commit()
        built = await s.scalar(
            text("SELECT count(*) FROM kpi_day_histograms WHERE channel = :c"), {"c": channel}
        )
        exact = await compute_kpis(
            s, KpiFilter(window["from"], window["to"], customer_code=customer)
        )
    assert built and built < len(seconds)  # read from the rollup, fewer rows than values
    for key in ("orders_received", "orders_completed", "first_pass_rate", "fill_rate"):
        assert rolled[key] == exact[key], key
    r, e = rolled["step_seconds"]["picking"], exact["step_seconds"]["picking"]
    assert r["count"] == e["count"] == len(seconds)
    for q in ("median", "p95"):
        assert abs(r[q] - e[q]) <= 0.02 * e[q], (q, r[q], e[q])

    # A later change to an order of that closed day marks the day; the next read rebuilds it.
    async with stack.sessions() as s:
        await repo.apply_status(
            s, StatusChange(order_id=oid, status=OrderStatus.VALIDATED, step_key="v")
        )
        await s.commit()
        marked = await s.scalar(
            text("SELECT count(*) FROM kpi_dirty_days WHERE day = :d"), {"d": day.date()}
        )
        assert marked
        again = await compute_kpis(s, KpiFilter(window["from"], window["to"], channel=channel))
        await s.commit()
    assert again["step_seconds"]["received"]["count"] == 1  # the step it left
    assert again["first_pass_rate"] == 1.0  # validated, never routed
    assert again["step_seconds"]["picking"] == r
