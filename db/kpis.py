"""Process KPIs, computed in SQL from per-order facts: `order_facts` (what each order's
timeline reached, its quantities) and `order_steps` (each finished step's seconds), both kept
by db/repo.py as orders move, so no KPI reads the timeline (docs/performance.md).

Closed days are read from a rollup (migration 0018, docs/kpis.md): per day (UTC, of the
orders' created_at) and channel, the counts below (exact) and the durations as histograms in
log-spaced buckets 2 % wide with each bucket's smallest and largest value, so a percentile
comes within one bucket (2 %) of the exact one. Today is read live from the facts, through
the same buckets. Triggers mark a closed day whose orders change; `refresh_rollup` rebuilds
marked and missing days before a read. Windows of one customer read the facts directly, with
exact percentiles (they are small).

Definitions (the window selects orders by the time they were received):
- received: orders created plus orders refused at entry (rejected attempts);
- entry error rate: (refused at entry + rejected by the workflow's validation) / received;
- first-pass rate: orders validated that never waited for an approval / orders validated;
- step time: for each status, the time until the order's next status;
- end to end: received -> completed;
- approval wait per role: requested -> decided, decided levels only;
- on-time delivery: delivered on or before the requested date / delivered with a date;
- fill rate: shipped quantity / ordered quantity over approved orders;
- backorder rate: approved orders that were ever backordered / approved orders;
- compensations: compensation entries on the timelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class KpiFilter:
    start: date | None = None
    end: date | None = None  # inclusive
    channel: str | None = None
    customer_code: str | None = None

    def params(self) -> dict[str, Any]:
        utc = UTC
        return {
            "start": datetime.combine(self.start, time.min, utc) if self.start else None,
            "end": datetime.combine(self.end + timedelta(days=1), time.min, utc)
            if self.end
            else None,
            "channel": self.channel,
            "customer": self.customer_code,
        }


# Orders in scope, from their facts (order_facts, kept by db/repo.py as orders move, so no
# KPI reads the timeline); every query below starts from this.
WHERE_WINDOW = """
          (CAST(:start AS timestamptz) IS NULL OR {t}.created_at >= :start)
      AND (CAST(:end AS timestamptz) IS NULL OR {t}.created_at < :end)
      AND (CAST(:channel AS text) IS NULL OR {t}.channel = :channel)
      AND (CAST(:customer AS text) IS NULL OR {t}.customer_code = :customer)
"""
SCOPE = f"""
    scope AS (
        SELECT f.* FROM order_facts f WHERE {WHERE_WINDOW.format(t="f")}
    )
"""

# The counts of some orders' facts (order_facts f, with their orders o LEFT JOINed when
# rejected, for the reason): one pass, exact. The rollup keeps these per day and channel.
COUNT_COLUMNS = (
    "orders",
    "completed",
    "rejected",
    "cancelled",
    "failed",
    "invalid_in_flow",
    "validated",
    "touchless",
    "approved",
    "backordered",
    "compensations",
    "shipped_qty",
    "ordered_qty",
    "shipped_all",
    "dated_deliveries",
    "on_time",
)
FACT_COUNTS = """
    count(*) AS orders,
    count(*) FILTER (WHERE f.status = 'completed') AS completed,
    count(*) FILTER (WHERE f.status = 'rejected') AS rejected,
    count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
    count(*) FILTER (WHERE f.status = 'failed') AS failed,
    count(*) FILTER (WHERE o.failure_reason LIKE 'validation:%') AS invalid_in_flow,
    count(*) FILTER (WHERE f.validated) AS validated,
    count(*) FILTER (WHERE f.validated AND NOT f.routed) AS touchless,
    count(*) FILTER (WHERE f.approved) AS approved,
    count(*) FILTER (WHERE f.approved AND f.backordered) AS backordered,
    coalesce(sum(f.compensations), 0) AS compensations,
    coalesce(sum(f.shipped_qty) FILTER (WHERE f.approved), 0) AS shipped_qty,
    coalesce(sum(f.ordered_qty) FILTER (WHERE f.approved), 0) AS ordered_qty,
    coalesce(sum(f.shipped_qty), 0) AS shipped_all,
    coalesce(sum(f.dated_deliveries), 0) AS dated_deliveries,
    coalesce(sum(f.on_time), 0) AS on_time
"""
FACTS_WITH_REASON = (
    "order_facts f LEFT JOIN orders o ON f.status = 'rejected' AND o.id = f.order_id"
)

# Orders refused at entry have no facts: counted from their audit rows, always live.
REFUSED = """
SELECT count(*) FROM rejected_attempts a
WHERE (CAST(:start AS timestamptz) IS NULL OR a.at >= :start)
  AND (CAST(:end AS timestamptz) IS NULL OR a.at < :end)
  AND (CAST(:channel AS text) IS NULL OR a.channel = :channel)
  AND (CAST(:customer AS text) IS NULL OR a.customer_code = :customer)
"""

# A customer's window, exact: its facts (index on customer_code, created_at).
COUNTS = f"""
SELECT {FACT_COUNTS} FROM {FACTS_WITH_REASON} WHERE {WHERE_WINDOW.format(t="f")}
"""

# Every other window: the rollup's closed days plus today's facts, per day.
ROLLUP_WINDOW = """
          (CAST(:start_day AS date) IS NULL OR day >= :start_day)
      AND (CAST(:end_day AS date) IS NULL OR day < :end_day)
      AND day < :live_day
      AND (CAST(:channel AS text) IS NULL OR channel = :channel)
"""
DAY_COUNTS = f"""
    SELECT day, {", ".join(COUNT_COLUMNS)} FROM kpi_day_counts WHERE {ROLLUP_WINDOW}
    UNION ALL
    SELECT (f.created_at AT TIME ZONE 'UTC')::date, {FACT_COUNTS}
    FROM {FACTS_WITH_REASON}
    WHERE {WHERE_WINDOW.format(t="f")} AND f.created_at >= :live_from
    GROUP BY 1
"""
ROLLED_COUNTS = f"""
SELECT {", ".join(f"coalesce(sum({c}), 0)::bigint AS {c}" for c in COUNT_COLUMNS)}
FROM ({DAY_COUNTS}) d
"""

# Each finished step's seconds until the order's next status (order_steps: written by
# apply_status when the next status comes; the steps carry their order's filters). Grouped
# by hashing (each status's seconds as an array), then one sort per status for both
# percentiles: sorting the whole window by status first took most of the time.
STEP_TIMES = f"""
SELECT status, n, p[1] AS p50, p[2] AS p95
FROM (SELECT status, count(*) AS n, array_agg(seconds) AS secs
      FROM order_steps st WHERE {WHERE_WINDOW.format(t="st")}
      GROUP BY status) g,
     LATERAL (SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY v) AS p
              FROM unnest(g.secs) v) x
ORDER BY status
"""

END_TO_END = f"""
WITH {SCOPE}
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d)) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM d)) AS p95
FROM (SELECT completed_at - received_at AS d FROM scope
      WHERE completed_at IS NOT NULL) spans
"""

APPROVAL_WAIT = f"""
WITH {SCOPE}
SELECT role, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY waited) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY waited) AS p95
FROM (SELECT a.role, extract(epoch FROM a.decided_at - a.requested_at) AS waited
      FROM approvals a JOIN scope s ON s.order_id = a.order_id
      WHERE a.decided_at IS NOT NULL) w
GROUP BY role ORDER BY role
"""

# The durations behind the percentiles, as (metric, key, value) rows of some orders: each
# finished step's seconds by status, received -> completed, and each decided approval's
# wait by role; {steps} and {facts} restrict order_steps st and order_facts f.
DURATIONS = """
    SELECT {day_st} AS day, st.channel, 'step' AS metric, st.status AS key, st.seconds AS v
    FROM {steps}
    UNION ALL
    SELECT {day_f}, f.channel, 'end_to_end', '',
           CAST(extract(epoch FROM f.completed_at - f.received_at) AS double precision)
    FROM {facts} AND f.completed_at IS NOT NULL
    UNION ALL
    SELECT {day_f}, f.channel, 'approval_wait', a.role,
           CAST(extract(epoch FROM a.decided_at - a.requested_at) AS double precision)
    FROM {facts_approvals} AND a.decided_at IS NOT NULL
"""
# Buckets 2 % wide: bucket b holds (1.02^b, 1.02^(b+1)]; zero and below share one bucket.
BUCKET = "CASE WHEN v > 0 THEN floor(ln(v) / ln(1.02))::int ELSE -100000 END"
HISTOGRAM = f"""
SELECT {{group}} metric, key, {BUCKET} AS bucket, count(*) AS n, min(v) AS lo, max(v) AS hi
FROM ({{durations}}) x
GROUP BY {{group}} metric, key, bucket
"""
LIVE = "{t}.created_at >= :live_from AND " + WHERE_WINDOW
LIVE_HISTOGRAM = HISTOGRAM.format(
    group="",
    durations=DURATIONS.format(
        day_st="NULL",
        day_f="NULL",
        steps=f"order_steps st WHERE {LIVE.format(t='st')}",
        facts=f"order_facts f WHERE {LIVE.format(t='f')}",
        facts_approvals="approvals a JOIN order_facts f ON f.order_id = a.order_id "
        f"WHERE {LIVE.format(t='f')}",
    ),
)
ROLLED_HISTOGRAM = f"""
SELECT metric, key, bucket, sum(n) AS n, min(lo) AS lo, max(hi) AS hi
FROM (
    SELECT metric, key, bucket, n, lo, hi FROM kpi_day_histograms WHERE {ROLLUP_WINDOW}
    UNION ALL
    {LIVE_HISTOGRAM}
) h
GROUP BY metric, key, bucket ORDER BY metric, key, bucket
"""

# Building closed days (:days): delete their rows, add them again from the facts.
DAYS = """
    SELECT d AS day, CAST(d AS timestamp) AT TIME ZONE 'UTC' AS lo,
           CAST(d + 1 AS timestamp) AT TIME ZONE 'UTC' AS hi
    FROM unnest(CAST(:days AS date[])) d
"""
IN_DAYS = "JOIN ({days}) d ON {t}.created_at >= d.lo AND {t}.created_at < d.hi"
BUILD_COUNTS = f"""
INSERT INTO kpi_day_counts (day, channel, {", ".join(COUNT_COLUMNS)})
SELECT d.day, f.channel, {FACT_COUNTS}
FROM {FACTS_WITH_REASON} {IN_DAYS.format(days=DAYS, t="f")}
GROUP BY d.day, f.channel
"""
DAY_DURATIONS = DURATIONS.format(
    day_st="d.day",
    day_f="d.day",
    steps=f"order_steps st {IN_DAYS.format(days=DAYS, t='st')} WHERE true",
    facts=f"order_facts f {IN_DAYS.format(days=DAYS, t='f')} WHERE true",
    facts_approvals="approvals a JOIN order_facts f ON f.order_id = a.order_id "
    f"{IN_DAYS.format(days=DAYS, t='f')} WHERE true",
)
BUILD_HISTOGRAMS = (
    "INSERT INTO kpi_day_histograms (day, channel, metric, key, bucket, n, lo, hi)"
    + HISTOGRAM.format(group="day, channel,", durations=DAY_DURATIONS)
)
DROP_DAYS = (
    "DELETE FROM kpi_day_counts WHERE day = ANY(CAST(:days AS date[]))",
    "DELETE FROM kpi_day_histograms WHERE day = ANY(CAST(:days AS date[]))",
)
BUILT = """
INSERT INTO kpi_days (day) SELECT unnest(CAST(:days AS date[]))
ON CONFLICT (day) DO UPDATE SET built_at = now()
"""
# A day is closed once it ended 10 minutes ago (UTC): a writer that started before its
# midnight has committed by then, and one that started after marks the day (the triggers of
# migration 0018). Days from here on are read live.
LIVE_DAY = "SELECT CAST(now() AT TIME ZONE 'UTC' - interval '10 minutes' AS date)"
# The window's closed days to build: marked ones (their marks taken) and never built ones.
MARKED = """
          (CAST(:start_day AS date) IS NULL OR day >= :start_day)
      AND (CAST(:end_day AS date) IS NULL OR day < :end_day) AND day < :live_day
"""
NEVER_BUILT = """
SELECT CAST(d AS date) FROM generate_series(
    greatest(CAST(:start_day AS date),
             (SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM order_facts)),
    least(CAST(:end_day AS date), CAST(:live_day AS date)) - 1, interval '1 day') d
WHERE NOT EXISTS (SELECT 1 FROM kpi_days k WHERE k.day = CAST(d AS date))
"""
ANYTHING_TO_BUILD = f"""
SELECT EXISTS (SELECT 1 FROM kpi_dirty_days WHERE {MARKED}) OR EXISTS ({NEVER_BUILT})
"""
TO_BUILD = f"""
WITH marked AS (DELETE FROM kpi_dirty_days WHERE {MARKED} RETURNING day)
SELECT day FROM marked UNION {NEVER_BUILT} ORDER BY 1
"""
ROLLUP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('orderflow.kpi_rollup'))"


# Returns (docs/returns.md): units that came back (received; refused and pending returns do
# not count) over units shipped, per product, and per reason over all units shipped (the
# counts' shipped_all). Both start from the returns and reach the window's facts by order
# id; per product reads the window's lines of the returned products only, and only when the
# window has returns (compute_kpis asks RETURNS_BY_REASON first).
RETURNED = f"""
    SELECT r.id, r.reason, r.order_id FROM returns r
    JOIN order_facts f ON f.order_id = r.order_id WHERE {WHERE_WINDOW.format(t="f")}
"""
RETURNS_BY_PRODUCT = f"""
WITH back AS (
        SELECT rl.sku, sum(rl.received_qty) AS units FROM return_lines rl
        JOIN ({RETURNED}) r ON r.id = rl.return_id
        GROUP BY rl.sku HAVING coalesce(sum(rl.received_qty), 0) > 0
    ),
    shipped AS (
        SELECT l.sku, sum(l.shipped_qty) AS units FROM order_lines l
        JOIN order_facts f ON f.order_id = l.order_id
        WHERE l.sku IN (SELECT sku FROM back) AND {WHERE_WINDOW.format(t="f")}
        GROUP BY l.sku
    )
SELECT sh.sku, sh.units AS shipped, b.units AS returned
FROM shipped sh JOIN back b ON b.sku = sh.sku ORDER BY sh.sku
"""

RETURNS_BY_REASON = f"""
SELECT r.reason, count(DISTINCT r.id) AS returns, coalesce(sum(rl.received_qty), 0) AS units
FROM ({RETURNED}) r JOIN return_lines rl ON rl.return_id = r.id
GROUP BY r.reason ORDER BY r.reason
"""


# The facts of some orders recomputed from their timelines, the way migration 0017 backfilled
# every order's: for histories written by hand (tests, repairs) rather than by the writers.
REFRESH_FACTS = """
INSERT INTO order_facts (order_id, created_at, channel, customer_code, status, status_at,
                         validated, routed, approved, backordered, compensations,
                         dated_deliveries, on_time, ordered_qty, shipped_qty, received_at,
                         completed_at)
SELECT o.id, o.created_at, o.channel, o.customer_code, o.status,
       coalesce(t.last_at, o.created_at),
       coalesce(t.validated, false), coalesce(t.routed, false), coalesce(t.approved, false),
       coalesce(t.backordered, false), coalesce(t.compensations, 0),
       CASE WHEN o.requested_delivery_date IS NULL THEN 0 ELSE coalesce(t.deliveries, 0) END,
       coalesce(t.on_time, 0), coalesce(q.ordered, 0), coalesce(q.shipped, 0),
       coalesce(t.received_at, o.created_at), t.completed_at
FROM orders o
LEFT JOIN (
    SELECT e.order_id,
           bool_or(e.kind = 'status' AND e.status = 'validated') AS validated,
           bool_or(e.kind = 'status' AND e.status = 'awaiting_approval') AS routed,
           bool_or(e.kind = 'status' AND e.status = 'approved') AS approved,
           bool_or(e.kind = 'status' AND e.status = 'backordered') AS backordered,
           count(*) FILTER (WHERE e.kind = 'compensation') AS compensations,
           count(*) FILTER (WHERE e.kind = 'status' AND e.status = 'delivered') AS deliveries,
           count(*) FILTER (WHERE e.kind = 'status' AND e.status = 'delivered'
                              AND (e.at AT TIME ZONE 'UTC')::date
                                  <= d.requested_delivery_date) AS on_time,
           max(e.at) FILTER (WHERE e.kind = 'status') AS last_at,
           min(e.at) FILTER (WHERE e.kind = 'status' AND e.status = 'received') AS received_at,
           max(e.at) FILTER (WHERE e.kind = 'status' AND e.status = 'completed') AS completed_at
    FROM order_events e JOIN orders d ON d.id = e.order_id
    WHERE e.order_id = ANY(:ids)
    GROUP BY e.order_id
) t ON t.order_id = o.id
LEFT JOIN (
    SELECT order_id, sum(quantity) AS ordered, sum(shipped_qty) AS shipped
    FROM order_lines WHERE order_id = ANY(:ids) GROUP BY order_id
) q ON q.order_id = o.id
WHERE o.id = ANY(:ids)
ON CONFLICT (order_id) DO UPDATE SET
    created_at = excluded.created_at, channel = excluded.channel,
    customer_code = excluded.customer_code, status = excluded.status,
    status_at = excluded.status_at, validated = excluded.validated, routed = excluded.routed,
    approved = excluded.approved, backordered = excluded.backordered,
    compensations = excluded.compensations, dated_deliveries = excluded.dated_deliveries,
    on_time = excluded.on_time, ordered_qty = excluded.ordered_qty,
    shipped_qty = excluded.shipped_qty, received_at = excluded.received_at,
    completed_at = excluded.completed_at
"""

REFRESH_STEPS = """
WITH gone AS (DELETE FROM order_steps WHERE order_id = ANY(:ids))
INSERT INTO order_steps (order_id, created_at, channel, customer_code, status, seconds)
SELECT s.order_id, o.created_at, o.channel, o.customer_code, s.status,
       extract(epoch FROM s.took)
FROM (
    SELECT order_id, status, LEAD(at) OVER (PARTITION BY order_id ORDER BY at, id) - at AS took
    FROM order_events WHERE kind = 'status' AND order_id = ANY(:ids)
) s
JOIN orders o ON o.id = s.order_id
WHERE s.took IS NOT NULL
"""


async def refresh_facts(session: AsyncSession, order_ids: list[str]) -> None:
    """Recompute `order_ids`' facts and steps from their timelines (flushes first)."""
    await session.flush()
    await session.execute(text(REFRESH_FACTS), {"ids": order_ids})
    await session.execute(text(REFRESH_STEPS), {"ids": order_ids})


async def prefer_indexes(session: AsyncSession) -> None:
    """For this transaction only: cost random reads as the cached, SSD-backed database
    they are (at the default 4, a spinning disk's, PostgreSQL reads a month's facts and steps
    by a full scan rather than their created_at index), and sort each status's step seconds
    in memory rather than on disk. A KPI request is a rare report: the memory is bounded by
    its few sorts. docs/performance.md "Reads at scale"."""
    await session.execute(text("SET LOCAL random_page_cost = 1.1"))
    await session.execute(text("SET LOCAL work_mem = '64MB'"))


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


# The warehouse floor (manual mode): time to pick (list created -> confirmed), time to pack
# (confirmed -> packages given), pick accuracy (units picked / units on the lists). From the
# pick lists, reaching the window's facts by order id.
FLOOR = f"""
WITH lists AS (
        SELECT p.created_at, p.picked_at, p.packed_at, p.lines
        FROM pick_lists p JOIN order_facts f ON f.order_id = p.order_id
        WHERE p.picked_at IS NOT NULL AND {WHERE_WINDOW.format(t="f")}
    ),
    units AS (
        SELECT coalesce(sum((ln->>'quantity')::int), 0) AS requested,
               coalesce(sum(coalesce((ln->>'picked')::int, (ln->>'quantity')::int)), 0) AS picked
        FROM lists, jsonb_array_elements(lists.lines) ln
    )
SELECT
    (SELECT count(*) FROM lists) AS picks,
    (SELECT percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM picked_at - created_at)) FROM lists) AS pick_p50,
    (SELECT percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM picked_at - created_at)) FROM lists) AS pick_p95,
    (SELECT count(*) FROM lists WHERE packed_at IS NOT NULL) AS packs,
    (SELECT percentile_cont(0.5) WITHIN GROUP (
        ORDER BY extract(epoch FROM packed_at - picked_at)) FROM lists
        WHERE packed_at IS NOT NULL) AS pack_p50,
    (SELECT percentile_cont(0.95) WITHIN GROUP (
        ORDER BY extract(epoch FROM packed_at - picked_at)) FROM lists
        WHERE packed_at IS NOT NULL) AS pack_p95,
    (SELECT requested FROM units) AS requested,
    (SELECT picked FROM units) AS picked
"""


def _secs(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


async def refresh_rollup(session: AsyncSession, f: KpiFilter) -> dict[str, Any]:
    """Build the window's closed days that changed since they were built, or never were, in
    the caller's transaction (which commits them); the parameters of the rollup's reads.
    Builders queue on one lock (a build takes a day's facts, about 0.1 s at 2,700 orders a
    day); a read with nothing to build takes no lock."""
    live_day = await session.scalar(text(LIVE_DAY))
    assert live_day is not None
    p = f.params() | {
        "start_day": f.start,
        "end_day": f.end + timedelta(days=1) if f.end else None,
        "live_day": live_day,
        "live_from": datetime.combine(live_day, time.min, UTC),
    }
    if await session.scalar(text(ANYTHING_TO_BUILD), p):
        await session.execute(text(ROLLUP_LOCK))
        days = list((await session.scalars(text(TO_BUILD), p)).all())
        if days:
            await build_days(session, days)
    return p


async def build_days(session: AsyncSession, days: list[date]) -> None:
    """(Re)build the rollup rows of closed `days` from their facts."""
    for sql in DROP_DAYS:
        await session.execute(text(sql), {"days": days})
    await session.execute(text(BUILD_COUNTS), {"days": days})
    await session.execute(text(BUILD_HISTOGRAMS), {"days": days})
    await session.execute(text(BUILT), {"days": days})


def _percentiles(buckets: list[Any]) -> dict[str, Any]:
    """count, median and p95 of the values behind `buckets` (n, lo, hi; in value order), as
    percentile_cont would give them from the values: each value is placed by its rank within
    its bucket between the bucket's smallest and largest, so the answer is exact where a
    bucket holds one value or equal ones, and within the bucket (2 %) otherwise."""
    total = sum(int(b.n) for b in buckets)

    def nth(k: int) -> float:
        seen = 0
        for b in buckets:
            n = int(b.n)
            if k < seen + n:
                j = k - seen
                return float(b.lo) if n == 1 else b.lo + (b.hi - b.lo) * j / (n - 1)
            seen += n
        raise IndexError(k)

    def cont(q: float) -> float:
        pos = q * (total - 1)
        below = int(pos)
        v = nth(below)
        return v if pos == below else v + (pos - below) * (nth(below + 1) - v)

    if not total:
        return {"count": 0, "median": None, "p95": None}
    return {"count": total, "median": _secs(cont(0.5)), "p95": _secs(cont(0.95))}


async def _durations(session: AsyncSession, p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Step times, end to end and approval waits of a window without a customer: the
    rollup's histograms of its closed days and today's, merged per metric and key."""
    rows = (await session.execute(text(ROLLED_HISTOGRAM), p)).all()
    grouped: dict[str, dict[str, list[Any]]] = {}
    for r in rows:
        grouped.setdefault(r.metric, {}).setdefault(r.key, []).append(r)
    return {
        metric: {key: _percentiles(b) for key, b in sorted(keys.items())}
        for metric, keys in grouped.items()
    }


async def _exact_durations(session: AsyncSession, p: dict[str, Any]) -> dict[str, Any]:
    """The same, exact, from the facts: a customer's window."""
    steps = (await session.execute(text(STEP_TIMES), p)).mappings().all()
    e2e = (await session.execute(text(END_TO_END), p)).mappings().one()
    waits = (await session.execute(text(APPROVAL_WAIT), p)).mappings().all()

    def row(r: Any) -> dict[str, Any]:
        return {"count": r["n"], "median": _secs(r["p50"]), "p95": _secs(r["p95"])}

    return {
        "step": {r["status"]: row(r) for r in steps},
        "end_to_end": {"": row(e2e)},
        "approval_wait": {r["role"]: row(r) for r in waits},
    }


async def compute_kpis(session: AsyncSession, f: KpiFilter) -> dict[str, Any]:
    """Every KPI for the window and filters, as plain JSON-able values (seconds, ratios).
    May build rollup days in the caller's transaction: commit it to keep them."""
    if f.customer_code:
        p = f.params()
        await prefer_indexes(session)
        c = (await session.execute(text(COUNTS), p)).mappings().one()
        durations = await _exact_durations(session, p)
    else:
        p = await refresh_rollup(session, f)
        await prefer_indexes(session)
        c = (await session.execute(text(ROLLED_COUNTS), p)).mappings().one()
        durations = await _durations(session, p)
    refused = int(await session.scalar(text(REFUSED), p) or 0)
    received = int(c["orders"]) + refused
    by_reason = (await session.execute(text(RETURNS_BY_REASON), p)).mappings().all()
    by_product = (
        (await session.execute(text(RETURNS_BY_PRODUCT), p)).mappings().all()
        if any(r["units"] for r in by_reason)
        else []
    )
    floor = (await session.execute(text(FLOOR), p)).mappings().one()
    shipped_all = int(c["shipped_all"])
    none = {"count": 0, "median": None, "p95": None}
    return {
        "filters": {
            "from": f.start,
            "to": f.end,
            "channel": f.channel,
            "customer_code": f.customer_code,
        },
        "orders_received": received,
        "orders_completed": int(c["completed"]),
        "orders_rejected": int(c["rejected"]),
        "orders_cancelled": int(c["cancelled"]),
        "orders_failed": int(c["failed"]),
        "refused_at_entry": refused,
        "entry_error_rate": _ratio(refused + int(c["invalid_in_flow"]), received),
        "first_pass_rate": _ratio(int(c["touchless"]), int(c["validated"])),
        "on_time_delivery_rate": _ratio(int(c["on_time"]), int(c["dated_deliveries"])),
        "fill_rate": _ratio(int(c["shipped_qty"]), int(c["ordered_qty"])),
        "backorder_rate": _ratio(int(c["backordered"]), int(c["approved"])),
        "compensations": int(c["compensations"]),
        "end_to_end_seconds": durations.get("end_to_end", {}).get("", none),
        "step_seconds": durations.get("step", {}),
        "approval_wait_seconds": durations.get("approval_wait", {}),
        "time_to_pick_seconds": {
            "count": floor["picks"],
            "median": _secs(floor["pick_p50"]),
            "p95": _secs(floor["pick_p95"]),
        },
        "time_to_pack_seconds": {
            "count": floor["packs"],
            "median": _secs(floor["pack_p50"]),
            "p95": _secs(floor["pack_p95"]),
        },
        "pick_accuracy": _ratio(int(floor["picked"]), int(floor["requested"])),
        "returns": {
            "rate_by_product": {
                r["sku"]: {
                    "shipped": int(r["shipped"]),
                    "returned": int(r["returned"]),
                    "rate": _ratio(int(r["returned"]), int(r["shipped"])),
                }
                for r in by_product
            },
            "by_reason": {
                r["reason"]: {
                    "returns": r["returns"],
                    "units": int(r["units"]),
                    "rate": _ratio(int(r["units"]), shipped_all),
                }
                for r in by_reason
            },
        },
    }


# The same definitions as COUNTS, per week (Monday, UTC) of the day each order was received:
# one grouped pass over the window's facts, for the console's trend charts.
WEEKLY = f"""
WITH {SCOPE}
SELECT date_trunc('week', created_at AT TIME ZONE 'UTC')::date AS week,
       count(*) AS orders,
       count(*) FILTER (WHERE validated) AS validated,
       count(*) FILTER (WHERE validated AND NOT routed) AS touchless,
       coalesce(sum(shipped_qty) FILTER (WHERE approved), 0) AS shipped_qty,
       coalesce(sum(ordered_qty) FILTER (WHERE approved), 0) AS ordered_qty,
       coalesce(sum(dated_deliveries), 0) AS dated_deliveries,
       coalesce(sum(on_time), 0) AS on_time
FROM scope
GROUP BY week ORDER BY week
"""


# The same, from the rollup's closed days and today's facts: a window without a customer.
WEEKLY_ROLLED = f"""
SELECT day - (extract(isodow FROM day)::int - 1) AS week,
       sum(orders) AS orders, sum(validated) AS validated, sum(touchless) AS touchless,
       sum(shipped_qty) AS shipped_qty, sum(ordered_qty) AS ordered_qty,
       sum(dated_deliveries) AS dated_deliveries, sum(on_time) AS on_time
FROM ({DAY_COUNTS}) d
GROUP BY week ORDER BY week
"""


MAX_WEEKS = 52


async def weekly_trends(session: AsyncSession, f: KpiFilter) -> list[dict[str, Any]]:
    """Orders received, first-pass, fill and on-time rates for each week (Monday, UTC) of
    the window, from its first week with orders to its end (this week at the latest), empty
    weeks included (rates None), the last `MAX_WEEKS` at most. The definitions are
    `compute_kpis`' own, so the weeks' counts add up to its totals."""
    if f.customer_code:
        rows = (await session.execute(text(WEEKLY), f.params())).mappings().all()
    else:
        p = await refresh_rollup(session, f)
        rows = (await session.execute(text(WEEKLY_ROLLED), p)).mappings().all()
    found = {r["week"]: r for r in rows}
    if not found:
        return []
    this_week = _monday(datetime.now(UTC).date())
    last = max(max(found), min(_monday(f.end), this_week) if f.end else max(found))
    first = max(min(found), last - timedelta(weeks=MAX_WEEKS - 1))
    weeks = []
    week = first
    while week <= last:
        r = found.get(week)
        weeks.append(
            {
                "week": week,
                "orders": int(r["orders"]) if r else 0,
                "first_pass_rate": _ratio(int(r["touchless"]), int(r["validated"])) if r else None,
                "fill_rate": _ratio(int(r["shipped_qty"]), int(r["ordered_qty"])) if r else None,
                "on_time_delivery_rate": _ratio(int(r["on_time"]), int(r["dated_deliveries"]))
                if r
                else None,
            }
        )
        week += timedelta(days=7)
    return weeks


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())
