"""`orderflow bench --history N`: reads at scale.

Writes a realistic year of history straight into a scratch PostgreSQL database (a database of
its own on the stack's server, never the application's): N orders spread over the last 365
days, their lines, status timelines, approvals (1 % waiting for one), shipments, invoices
and receivables. PostgreSQL generates the rows itself (INSERT ... SELECT generate_series, in
chunks): nothing of the history passes through Python. Then it measures, through the real
FastAPI app (in process, on the scratch database, with the stack's Temporal), p50/p99 of
GET /orders under each filter and cursor paging, GET /orders/{id}, GET /kpis for a month
and a year, the approvals inbox, and `orderflow stuck` (services.stuck.find_stuck).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from httpx import ASGITransport
from sqlalchemy.engine import make_url
from temporalio.client import Client

from api.auth import create_user
from api.main import create_app
from db.kpis import BUILD_COUNTS, BUILD_HISTOGRAMS, BUILT, DROP_DAYS, LIVE_DAY
from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from services.config import Settings
from services.stuck import find_stuck

CUSTOMERS = 500
PRODUCTS = 1000
CHUNK = 50_000  # orders per INSERT ... SELECT: bounded transactions, visible progress
CHANNELS = ("api", "web", "edi", "import", "webhook")
APPROVER_ROLES = ("credit_controller", "sales_manager", "director", "ops")
HAPPY = "received,validated,approved,reserved,picking,packed,shipped,invoiced,delivered,completed"
ROUTED = (
    "received,validated,awaiting_approval,approved,reserved,picking,packed,shipped,invoiced,"
    "delivered,completed"
)
# An order's fate by bucket = (i * 7919) % 1000: 1 % wait for approval, 3 % rejected,
# 2 % cancelled, 2 % in flight (shipped or backordered, some for days: `stuck` finds them),
# 15 % routed through an approval then completed, the rest completed without a human.
PATH = f"""
CASE
  WHEN b < 10 THEN 'received,validated,awaiting_approval'
  WHEN b < 40 THEN 'received,rejected'
  WHEN b < 60 THEN 'received,validated,approved,reserved,cancelled'
  WHEN b < 70 THEN 'received,validated,approved,reserved,picking,packed,shipped'
  WHEN b < 80 THEN 'received,validated,approved,backordered'
  WHEN b < 230 THEN '{ROUTED}'
  ELSE '{HAPPY}'
END"""

SETUP = f"""
INSERT INTO customers (code, name, tier, credit_limit, payment_terms_days, address_line1,
                       city, postal_code, country, status, created_at)
SELECT 'BC-' || lpad(c::text, 4, '0'), 'Bench customer ' || c,
       (ARRAY['standard','silver','gold'])[1 + c % 3], 1000000, 30, c || ' Bench Road',
       'Shanghai', '200000', 'CN', 'active', now() - interval '400 days'
FROM generate_series(0, {CUSTOMERS - 1}) c;
INSERT INTO products (sku, name, unit_price, floor_price, pack_size, min_order_qty,
                      make_to_order, active, bin_location, created_at)
SELECT 'BSKU-' || lpad(p::text, 4, '0'), 'Bench product ' || p, 10 + p % 90, 5, 1, 1,
       false, true, 'A-' || lpad((p % 100)::text, 2, '0') || '-01', now()
FROM generate_series(0, {PRODUCTS - 1}) p;
"""

# The orders i in [lo, hi): created evenly over the year up to now, newest = highest id.
ORDERS = f"""
WITH g AS (
    SELECT i, (i::bigint * 7919) % 1000 AS b,
           now() - (:n - i) * (interval '365 days' / :n) AS created
    FROM generate_series(:lo, :hi - 1) i
), p AS (
    SELECT g.*, string_to_array({PATH}, ',') AS path FROM g
)
INSERT INTO orders (id, customer_code, channel, external_ref, status, awaiting_role, subtotal,
                    order_discount, total, currency, ship_to, requested_delivery_date,
                    special_instructions, price_rules_version, created_by, failure_reason,
                    allow_partial, created_at, updated_at)
SELECT 'SO-' || lpad(i::text, 7, '0'),
       'BC-' || lpad(((i * 31) % {CUSTOMERS})::text, 4, '0'),
       (ARRAY{list(CHANNELS)!r})[1 + (i / 7) % {len(CHANNELS)}],
       'BR-' || i,
       path[array_length(path, 1)],
       CASE WHEN b < 10 THEN (ARRAY{list(APPROVER_ROLES)!r})[1 + i % {len(APPROVER_ROLES)}] END,
       100 + i % 900, 0, 100 + i % 900, 'CNY',
       '{{"line1": "1 Bench Road", "city": "Shanghai", "postal_code": "200000",
          "country": "CN"}}'::jsonb,
       (created + interval '5 days')::date, NULL, 'bench', 'bench',
       CASE WHEN b >= 10 AND b < 40 THEN 'validation: unknown sku' END,
       false, created,
       created + (array_length(path, 1) - 1) * interval '3 hours'
FROM p
"""

LINES = f"""
INSERT INTO order_lines (order_id, line_no, sku, quantity, list_price, unit_price, line_total,
                         price_rule, below_floor, discount_beyond_max, reserved_qty,
                         shipped_qty)
SELECT o.id, l, 'BSKU-' || lpad(((o.n * 13 + l * 101) % {PRODUCTS})::text, 4, '0'),
       1 + (o.n + l) % 20, 10, 10, 10 * (1 + (o.n + l) % 20), 'list', false, false,
       CASE WHEN o.status IN ('shipped','invoiced','delivered','completed')
            THEN 1 + (o.n + l) % 20 ELSE 0 END,
       CASE WHEN o.status IN ('shipped','invoiced','delivered','completed')
            THEN 1 + (o.n + l) % 20 ELSE 0 END
FROM (SELECT id, status, substr(id, 4)::int AS n FROM orders
      WHERE id >= :lo_id AND id < :hi_id) o,
     generate_series(1, 1 + o.n % 5) l
"""

EVENTS = f"""
WITH o AS (
    SELECT id, created_at, (substr(id, 4)::bigint * 7919) % 1000 AS b FROM orders
    WHERE id >= :lo_id AND id < :hi_id
)
INSERT INTO order_events (order_id, step_key, at, status, kind, actor, detail)
SELECT o.id, 'bench:' || s.k, o.created_at + (s.k - 1) * interval '3 hours', s.st, 'status',
       'system', 'bench history'
FROM o, unnest(string_to_array({PATH}, ',')) WITH ORDINALITY AS s(st, k)
"""

# The KPI facts (db/repo.py keeps them as orders move; migration 0017 backfills them the
# same way): one order_facts row per order and one order_steps row per finished step,
# from the chunk's timeline just written.
FACTS = """
WITH t AS (
    SELECT order_id,
           bool_or(status = 'validated') AS validated,
           bool_or(status = 'awaiting_approval') AS routed,
           bool_or(status = 'approved') AS approved,
           bool_or(status = 'backordered') AS backordered,
           count(*) FILTER (WHERE status = 'delivered') AS deliveries,
           max(at) AS last_at,
           min(at) FILTER (WHERE status = 'received') AS received_at,
           max(at) FILTER (WHERE status = 'completed') AS completed_at,
           max(at) FILTER (WHERE status = 'delivered') AS delivered_at
    FROM order_events WHERE order_id >= :lo_id AND order_id < :hi_id AND kind = 'status'
    GROUP BY order_id
), q AS (
    SELECT order_id, sum(quantity) AS ordered, sum(shipped_qty) AS shipped FROM order_lines
    WHERE order_id >= :lo_id AND order_id < :hi_id GROUP BY order_id
)
INSERT INTO order_facts (order_id, created_at, channel, customer_code, status, status_at,
                         validated, routed, approved, backordered, compensations,
                         dated_deliveries, on_time, ordered_qty, shipped_qty, received_at,
                         completed_at)
SELECT o.id, o.created_at, o.channel, o.customer_code, o.status, t.last_at, t.validated,
       t.routed, t.approved, t.backordered, 0,
       CASE WHEN o.requested_delivery_date IS NULL THEN 0 ELSE t.deliveries END,
       CASE WHEN (t.delivered_at AT TIME ZONE 'UTC')::date <= o.requested_delivery_date
            THEN t.deliveries ELSE 0 END,
       coalesce(q.ordered, 0), coalesce(q.shipped, 0), t.received_at, t.completed_at
FROM orders o JOIN t ON t.order_id = o.id LEFT JOIN q ON q.order_id = o.id
WHERE o.id >= :lo_id AND o.id < :hi_id
"""

STEPS = """
INSERT INTO order_steps (order_id, created_at, channel, customer_code, status, seconds)
SELECT s.order_id, o.created_at, o.channel, o.customer_code, s.status,
       extract(epoch FROM s.took)
FROM (
    SELECT order_id, status, LEAD(at) OVER (PARTITION BY order_id ORDER BY at, id) - at AS took
    FROM order_events WHERE order_id >= :lo_id AND order_id < :hi_id AND kind = 'status'
) s
JOIN orders o ON o.id = s.order_id
WHERE s.took IS NOT NULL
"""

APPROVALS = f"""
INSERT INTO approvals (order_id, level, role, reason, status, decided_by, comment,
                       requested_at, decided_at)
SELECT id, 1, (ARRAY{list(APPROVER_ROLES)!r})[1 + substr(id, 4)::int % {len(APPROVER_ROLES)}],
       'over the credit limit', CASE WHEN status = 'awaiting_approval' THEN 'pending'
                                     ELSE 'approved' END,
       CASE WHEN status = 'awaiting_approval' THEN NULL ELSE 'bench-approver' END, '',
       created_at + interval '3 hours',
       CASE WHEN status = 'awaiting_approval' THEN NULL
            ELSE created_at + interval '6 hours' END
FROM orders
WHERE id >= :lo_id AND id < :hi_id
  AND ((substr(id, 4)::bigint * 7919) % 1000 < 10
       OR (substr(id, 4)::bigint * 7919) % 1000 BETWEEN 80 AND 229)
"""

SHIPPED = """
SELECT id, substr(id, 4)::int AS n, customer_code, total, status, created_at FROM orders
WHERE id >= :lo_id AND id < :hi_id
  AND status IN ('shipped','invoiced','delivered','completed')
"""

SHIPMENTS = f"""
INSERT INTO shipments (order_id, shipment_no, tracking_number, carrier, status, packages,
                       booked_at, delivered_at)
SELECT id, 1, 'BT' || lpad(n::text, 9, '0'), 'bench-carrier',
       CASE WHEN status = 'completed' THEN 'delivered' ELSE 'in_transit' END, 1,
       created_at + interval '18 hours',
       CASE WHEN status = 'completed' THEN created_at + interval '27 hours' END
FROM ({SHIPPED}) s
"""

INVOICES = f"""
INSERT INTO invoices (number, order_id, customer_code, shipment_no, amount, issued_at,
                      due_date, credited)
SELECT 'BINV-' || lpad(n::text, 9, '0'), id, customer_code, 1, total,
       created_at + interval '21 hours', (created_at + interval '30 days')::date, false
FROM ({SHIPPED}) s
"""

RECEIVABLES = f"""
INSERT INTO receivables (invoice_number, customer_code, amount, open_amount, due_date)
SELECT 'BINV-' || lpad(n::text, 9, '0'), customer_code, total,
       CASE WHEN created_at < now() - interval '45 days' THEN 0 ELSE total END,
       (created_at + interval '30 days')::date
FROM ({SHIPPED}) s
"""

TABLES = (
    "kpi_day_counts",
    "kpi_day_histograms",
    "orders",
    "order_lines",
    "order_events",
    "order_facts",
    "order_steps",
    "approvals",
    "shipments",
    "invoices",
    "receivables",
)


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg's own conninfo."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def scratch_url(app_url: str, name: str) -> str:
    """The URL of database `name` on the application database's server."""
    return make_url(app_url).set(database=name).render_as_string(hide_password=False)


def create_scratch(app_url: str, name: str) -> str:
    """A fresh, migrated database `name` beside the application's; dropped first if there."""
    with psycopg.connect(_libpq(app_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = scratch_url(app_url, name)
    upgrade(url)
    return url


def drop_scratch(app_url: str, name: str) -> None:
    with psycopg.connect(_libpq(app_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bind(sql: str, **params: Any) -> tuple[str, dict[str, Any]]:
    """`:name` placeholders as psycopg's `%(name)s` (the SQL reads better without them)."""
    sql = sql.replace("%", "%%")
    for key in sorted(params, key=len, reverse=True):
        sql = sql.replace(f":{key}", f"%({key})s")
    return sql, params


def _without_triggers(conn: psycopg.Connection[Any]) -> bool:
    """Skip the KPI rollup's day-marking triggers for this connection (a superuser's, as on
    the embedded server): the history is written into closed days in bulk, and its rollup is
    built once at the end instead of marking days row by row. False when not allowed."""
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def build_rollup(conn: psycopg.Connection[Any]) -> int:
    """Build every closed day's KPI rollup from the facts (as migration 0018 does); days."""
    live_day = conn.execute(LIVE_DAY).fetchone()[0]  # type: ignore[index]
    first = conn.execute("SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM order_facts")
    first_day = first.fetchone()[0]  # type: ignore[index]
    if first_day is None:
        return 0
    days = [first_day + timedelta(days=k) for k in range((live_day - first_day).days)]
    with conn.transaction():
        conn.execute("DELETE FROM kpi_dirty_days")
        for sql in (*DROP_DAYS, BUILD_COUNTS, BUILD_HISTOGRAMS, BUILT):
            conn.execute(*_bind(sql, days=days))
    return len(days)


def write_history(url: str, orders: int, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Write `orders` orders of history and their rows; the rows per table and seconds."""
    started = time.perf_counter()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        _without_triggers(conn)
        conn.execute(SETUP)
        for lo in range(1, orders + 1, CHUNK):
            hi = min(lo + CHUNK, orders + 1)
            ids = {"lo_id": f"SO-{lo:07d}", "hi_id": f"SO-{hi:07d}"}
            with conn.transaction():
                conn.execute(*_bind(ORDERS, n=orders, lo=lo, hi=hi))
                for sql in (
                    LINES,
                    EVENTS,
                    FACTS,
                    STEPS,
                    APPROVALS,
                    SHIPMENTS,
                    INVOICES,
                    RECEIVABLES,
                ):
                    conn.execute(*_bind(sql, **ids))
            progress(f"history: {hi - 1:,} of {orders:,} orders written")
        conn.execute("SELECT setval('order_number_seq', %s)", (orders + 1,))
        written = time.perf_counter()
        days = build_rollup(conn)
        rollup_seconds = time.perf_counter() - written
        progress(f"history: KPI rollup of {days} closed days built in {rollup_seconds:.1f} s")
        conn.execute("VACUUM (ANALYZE)")
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "orders": orders,
        "rows": rows,
        "database_mb": round(int(size[0]) / 2**20, 1) if size else None,
        "write_seconds": round(time.perf_counter() - started, 1),
        "rollup_days": days,
        "rollup_seconds": round(rollup_seconds, 1),
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _stats(ms: list[float], cpu_ms: list[float] | None = None) -> dict[str, Any]:
    stats: dict[str, Any] = {"n": len(ms), "p50_ms": _pct(ms, 0.50), "p99_ms": _pct(ms, 0.99)}
    stats["max_ms"] = round(max(ms), 2)
    if cpu_ms:
        # The app's own CPU per request (it runs in this process): unlike the wall time,
        # it does not grow when other work shares the cores.
        stats |= {"app_cpu_p50_ms": _pct(cpu_ms, 0.50), "app_cpu_p99_ms": _pct(cpu_ms, 0.99)}
    return stats


async def _timed(
    samples: int, call: Callable[[int], Awaitable[Any]]
) -> tuple[dict[str, Any], list[Any]]:
    out: list[Any] = []
    ms: list[float] = []
    cpu_ms: list[float] = []
    await call(0)  # warm: the first call pays for plans and pool connections
    for k in range(samples):
        c0, t0 = time.process_time(), time.perf_counter()
        out.append(await call(k))
        ms.append((time.perf_counter() - t0) * 1000)
        cpu_ms.append((time.process_time() - c0) * 1000)
    return _stats(ms, cpu_ms), out


# p99 targets, ms (issue 18): the report says which hold.
TARGETS_MS = {
    "list": 50,
    "detail": 20,
    "kpis_month": 500,
    "kpis_year": 2000,
    "stuck": 2000,
    "inbox": 100,
}


async def measure(
    url: str, settings: Settings, client: Client, orders: int, samples: int = 50
) -> dict[str, Any]:
    """p50/p99 of each read, through the app on the scratch database."""
    cfg = settings.model_copy(update={"database_url": url})
    engine = make_engine(cfg.resolved_database_url, pool_size=4, max_overflow=4)
    sessions = make_session_factory(engine)
    app = create_app(cfg, sessions=sessions, client=client)
    results: dict[str, Any] = {}
    try:
        async with app.router.lifespan_context(app):
            async with sessions() as s:
                tokens = {
                    role: await create_user(s, f"bench-{role}-{uuid.uuid4().hex[:6]}", role)
                    for role in ("admin", "credit_controller")
                }
                await s.commit()
            transport = ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                results = await _measure_http(http, tokens, orders, samples)
            results["stuck"] = await _measure_stuck(sessions, client, cfg)
    finally:
        await engine.dispose()
    for key, res in results.items():
        target = TARGETS_MS.get(key) or TARGETS_MS[key.split("_")[0]]
        res["target_p99_ms"] = target
        res["met"] = res["p99_ms"] < target
    return results


async def _measure_http(
    http: httpx.AsyncClient, tokens: dict[str, str], orders: int, samples: int
) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    now = datetime.now(UTC)

    async def get(
        path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        r = await http.get(path, params=params, headers=headers or admin)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {r.status_code} {r.text[:200]}")
        return r.json()

    def order_id(k: int) -> str:
        return f"SO-{1 + (k * 7907) % orders:07d}"

    filters: dict[str, Callable[[int], dict[str, Any]]] = {
        "list_all": lambda k: {},
        "list_status_completed": lambda k: {"status": "completed"},
        "list_status_rejected": lambda k: {"status": "rejected"},
        "list_status_awaiting_approval": lambda k: {"status": "awaiting_approval"},
        "list_customer": lambda k: {"customer_code": f"BC-{(k * 37) % CUSTOMERS:04d}"},
        "list_channel": lambda k: {"channel": CHANNELS[k % len(CHANNELS)]},
        "list_updated_since": lambda k: {
            "updated_since": (now - timedelta(days=1 + k % 7)).isoformat()
        },
        "list_status_customer": lambda k: {
            "status": "completed",
            "customer_code": f"BC-{(k * 37) % CUSTOMERS:04d}",
        },
        # Deep pages: the cursor of an order from anywhere in the year.
        "list_cursor": lambda k: {"cursor": order_id(k)},
        "list_status_cursor": lambda k: {"status": "completed", "cursor": order_id(k)},
    }
    results: dict[str, Any] = {}
    for name, params in filters.items():
        stats, pages = await _timed(samples, _lister(get, params))
        stats["items_per_page"] = max(len(page["items"]) for page in pages)
        results[name] = stats
    # Following next_cursor page after page from the newest, as an integration would.
    cursor: dict[str, str | None] = {"next": None}

    async def next_page(_: int) -> Any:
        params = {"limit": 100} | ({"cursor": cursor["next"]} if cursor["next"] else {})
        page = await get("/orders", params)
        cursor["next"] = page["next_cursor"]
        return page

    results["list_paging"], _ = await _timed(samples, next_page)
    stats, details = await _timed(samples, lambda k: get(f"/orders/{order_id(k)}"))
    stats["timeline_events_max"] = max(len(d["timeline"]) for d in details)
    results["detail"] = stats
    month = (now - timedelta(days=30)).date().isoformat()
    year = (now - timedelta(days=365)).date().isoformat()
    kpi_samples = max(3, samples // 10)
    stats, kpis = await _timed(kpi_samples, lambda k: get("/kpis", {"from": month}))
    stats["orders_received"] = kpis[0]["orders_received"]
    results["kpis_month"] = stats
    stats, kpis = await _timed(kpi_samples, lambda k: get("/kpis", {"from": year}))
    stats["orders_received"] = kpis[0]["orders_received"]
    results["kpis_year"] = stats
    stats, boxes = await _timed(samples, lambda k: get("/approvals"))
    stats["items"] = len(boxes[0])
    results["inbox_admin"] = stats
    approver = {"Authorization": f"Bearer {tokens['credit_controller']}"}
    stats, boxes = await _timed(samples, lambda k: get("/approvals", headers=approver))
    stats["items"] = len(boxes[0])
    results["inbox_role"] = stats
    return results


def _lister(
    get: Callable[[str, dict[str, Any]], Awaitable[Any]],
    params: Callable[[int], dict[str, Any]],
) -> Callable[[int], Awaitable[Any]]:
    return lambda k: get("/orders", params(k))


async def _measure_stuck(sessions: Any, client: Client, settings: Settings) -> dict[str, Any]:
    """`orderflow stuck` (its default: open for an hour or more, the first 200)."""
    ms: list[float] = []
    found: list[Any] = []
    for _ in range(3):
        t0 = time.perf_counter()
        found = await find_stuck(sessions, client, settings, timedelta(hours=1))
        ms.append((time.perf_counter() - t0) * 1000)
    return _stats(ms) | {"orders_found": len(found)}


async def bench_reads(
    settings: Settings,
    client: Client,
    orders: int,
    samples: int = 50,
    keep: bool = False,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the history into a scratch database, measure the reads, drop it (unless keep)."""
    app_url = settings.resolved_database_url
    name = f"orderflow_reads_{orders}"
    url = create_scratch(app_url, name)
    try:
        history = write_history(url, orders, progress)
        progress("history written; measuring reads …")
        reads = await measure(url, settings, client, orders, samples)
    finally:
        if not keep:
            drop_scratch(app_url, name)
    missed = sorted(k for k, r in reads.items() if not r["met"])
    return {
        "kind": "reads",
        "history": history,
        "reads": reads,
        "targets_missed": missed,
        "scratch_database": name,
        "errors": {},
    }
