"""Process KPIs, computed in SQL from per-order facts: `order_facts` (what each order's
timeline reached, its quantities) and `order_steps` (each finished step's seconds), both kept
by db/repo.py as orders move, so no KPI reads the timeline (docs/performance.md).

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

# One pass over the scope's facts: what each order's timeline reached, its quantities.
COUNTS = f"""
WITH {SCOPE}
SELECT
    count(*) AS orders,
    (SELECT count(*) FROM rejected_attempts a
      WHERE (CAST(:start AS timestamptz) IS NULL OR a.at >= :start)
        AND (CAST(:end AS timestamptz) IS NULL OR a.at < :end)
        AND (CAST(:channel AS text) IS NULL OR a.channel = :channel)
        AND (CAST(:customer AS text) IS NULL OR a.customer_code = :customer)) AS refused,
    count(*) FILTER (WHERE status = 'completed') AS completed,
    count(*) FILTER (WHERE status = 'rejected') AS rejected,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    (SELECT count(*) FROM scope r JOIN orders o ON o.id = r.order_id
      WHERE r.status = 'rejected' AND o.failure_reason LIKE 'validation:%') AS invalid_in_flow,
    count(*) FILTER (WHERE validated) AS validated,
    count(*) FILTER (WHERE validated AND NOT routed) AS touchless,
    count(*) FILTER (WHERE approved) AS approved,
    count(*) FILTER (WHERE approved AND backordered) AS backordered,
    coalesce(sum(compensations), 0)::bigint AS compensations,
    coalesce(sum(shipped_qty) FILTER (WHERE approved), 0) AS shipped_qty,
    coalesce(sum(ordered_qty) FILTER (WHERE approved), 0) AS ordered_qty,
    coalesce(sum(dated_deliveries), 0)::bigint AS dated_deliveries,
    coalesce(sum(on_time), 0)::bigint AS on_time
FROM scope
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

# Returns (docs/returns.md): units that came back (received; refused and pending returns do
# not count) over units shipped, per product, and per reason over all units shipped. Per
# product reads the scope's lines of the returned products only, and only when the window
# has returns (compute_kpis asks RETURNS_BY_REASON first).
RETURNS_BY_PRODUCT = f"""
WITH {SCOPE},
    back AS (
        SELECT rl.sku, sum(rl.received_qty) AS units FROM return_lines rl
        JOIN returns r ON r.id = rl.return_id JOIN scope s ON s.order_id = r.order_id
        GROUP BY rl.sku HAVING coalesce(sum(rl.received_qty), 0) > 0
    ),
    shipped AS (
        SELECT l.sku, sum(l.shipped_qty) AS units FROM order_lines l
        JOIN scope s ON s.order_id = l.order_id
        WHERE l.sku IN (SELECT sku FROM back) GROUP BY l.sku
    )
SELECT sh.sku, sh.units AS shipped, b.units AS returned
FROM shipped sh JOIN back b ON b.sku = sh.sku ORDER BY sh.sku
"""

RETURNS_BY_REASON = f"""
WITH {SCOPE}
SELECT r.reason, count(DISTINCT r.id) AS returns, coalesce(sum(rl.received_qty), 0) AS units,
       (SELECT coalesce(sum(s2.shipped_qty), 0) FROM scope s2) AS shipped
FROM returns r JOIN scope s ON s.order_id = r.order_id
JOIN return_lines rl ON rl.return_id = r.id
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
# (confirmed -> packages given), pick accuracy (units picked / units on the lists).
FLOOR = f"""
WITH {SCOPE},
    lists AS (
        SELECT p.created_at, p.picked_at, p.packed_at, p.lines
        FROM pick_lists p JOIN scope s ON s.order_id = p.order_id
        WHERE p.picked_at IS NOT NULL
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


async def compute_kpis(session: AsyncSession, f: KpiFilter) -> dict[str, Any]:
    """Every KPI for the window and filters, as plain JSON-able values (seconds, ratios)."""
    p = f.params()
    await prefer_indexes(session)
    c = (await session.execute(text(COUNTS), p)).mappings().one()
    received = c["orders"] + c["refused"]
    steps = (await session.execute(text(STEP_TIMES), p)).mappings().all()
    e2e = (await session.execute(text(END_TO_END), p)).mappings().one()
    waits = (await session.execute(text(APPROVAL_WAIT), p)).mappings().all()
    by_reason = (await session.execute(text(RETURNS_BY_REASON), p)).mappings().all()
    by_product = (
        (await session.execute(text(RETURNS_BY_PRODUCT), p)).mappings().all()
        if any(r["units"] for r in by_reason)
        else []
    )
    floor = (await session.execute(text(FLOOR), p)).mappings().one()
    return {
        "filters": {
            "from": f.start,
            "to": f.end,
            "channel": f.channel,
            "customer_code": f.customer_code,
        },
        "orders_received": received,
        "orders_completed": c["completed"],
        "orders_rejected": c["rejected"],
        "orders_cancelled": c["cancelled"],
        "orders_failed": c["failed"],
        "refused_at_entry": c["refused"],
        "entry_error_rate": _ratio(c["refused"] + c["invalid_in_flow"], received),
        "first_pass_rate": _ratio(c["touchless"], c["validated"]),
        "on_time_delivery_rate": _ratio(c["on_time"], c["dated_deliveries"]),
        "fill_rate": _ratio(int(c["shipped_qty"]), int(c["ordered_qty"])),
        "backorder_rate": _ratio(c["backordered"], c["approved"]),
        "compensations": c["compensations"],
        "end_to_end_seconds": {
            "count": e2e["n"],
            "median": _secs(e2e["p50"]),
            "p95": _secs(e2e["p95"]),
        },
        "step_seconds": {
            r["status"]: {"count": r["n"], "median": _secs(r["p50"]), "p95": _secs(r["p95"])}
            for r in steps
        },
        "approval_wait_seconds": {
            r["role"]: {"count": r["n"], "median": _secs(r["p50"]), "p95": _secs(r["p95"])}
            for r in waits
        },
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
                    "rate": _ratio(int(r["units"]), int(r["shipped"])),
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


MAX_WEEKS = 52


async def weekly_trends(session: AsyncSession, f: KpiFilter) -> list[dict[str, Any]]:
    """Orders received, first-pass, fill and on-time rates for each week (Monday, UTC) of
    the window, from its first week with orders to its end (this week at the latest), empty
    weeks included (rates None), the last `MAX_WEEKS` at most. The definitions are
    `compute_kpis`' own, so the weeks' counts add up to its totals."""
    rows = (await session.execute(text(WEEKLY), f.params())).mappings().all()
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
                "orders": r["orders"] if r else 0,
                "first_pass_rate": _ratio(r["touchless"], r["validated"]) if r else None,
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
