"""issue 18: KPIs of closed days rolled up per day and channel

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-27 21:30:00

`kpi_day_counts`: the KPI counts of each closed day's orders per channel (sums of
order_facts); `kpi_day_histograms`: their durations (step seconds by status, end to end,
approval waits by role) in log-spaced buckets 2 % wide with each bucket's smallest and
largest value; `kpi_days`: the days built. Triggers on order_facts, approvals and
orders.failure_reason mark a closed day in `kpi_dirty_days` when one of its orders
changes; db/kpis.py rebuilds marked and missing days before it reads (docs/kpis.md). Every
closed day is built here from the facts, set-based. Also `ix_orders_urgent`, for the
approvals inbox's urgent-first page.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# A day is closed once it ended 10 minutes ago (UTC): a writer that started before midnight
# has committed by then (no transaction lasts that long), and one that started after it
# marks the day (the triggers below). The same cutoff as db/kpis.py's LIVE_DAY.
CLOSED = "(CAST(now() AT TIME ZONE 'UTC' - interval '10 minutes' AS date))"
# Today's UTC midnight: a change to an order created before it marks that order's day.
MIDNIGHT = "(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"

# The same statements as db/kpis.py's COUNTS_OF_DAYS and HISTOGRAMS_OF_DAYS, over every
# closed day at once (kept here as they were at this revision).
DAYS = f"""
    days AS (
        SELECT d::date AS day, d::date AT TIME ZONE 'UTC' AS lo,
               (d::date + 1) AT TIME ZONE 'UTC' AS hi
        FROM generate_series(
            (SELECT (min(created_at) AT TIME ZONE 'UTC')::date FROM order_facts),
            {CLOSED} - 1, interval '1 day') d
    )
"""
BUCKET = "CASE WHEN v > 0 THEN floor(ln(v) / ln(1.02))::int ELSE -100000 END"

BACKFILL_COUNTS = f"""
INSERT INTO kpi_day_counts (day, channel, orders, completed, rejected, cancelled, failed,
                            invalid_in_flow, validated, touchless, approved, backordered,
                            compensations, shipped_qty, ordered_qty, shipped_all,
                            dated_deliveries, on_time)
SELECT (f.created_at AT TIME ZONE 'UTC')::date, f.channel, count(*),
       count(*) FILTER (WHERE f.status = 'completed'),
       count(*) FILTER (WHERE f.status = 'rejected'),
       count(*) FILTER (WHERE f.status = 'cancelled'),
       count(*) FILTER (WHERE f.status = 'failed'),
       count(*) FILTER (WHERE o.failure_reason LIKE 'validation:%'),
       count(*) FILTER (WHERE f.validated),
       count(*) FILTER (WHERE f.validated AND NOT f.routed),
       count(*) FILTER (WHERE f.approved),
       count(*) FILTER (WHERE f.approved AND f.backordered),
       coalesce(sum(f.compensations), 0),
       coalesce(sum(f.shipped_qty) FILTER (WHERE f.approved), 0),
       coalesce(sum(f.ordered_qty) FILTER (WHERE f.approved), 0),
       coalesce(sum(f.shipped_qty), 0),
       coalesce(sum(f.dated_deliveries), 0), coalesce(sum(f.on_time), 0)
FROM order_facts f
LEFT JOIN orders o ON f.status = 'rejected' AND o.id = f.order_id
WHERE f.created_at < {CLOSED} AT TIME ZONE 'UTC'
GROUP BY 1, 2
"""

BACKFILL_HISTOGRAMS = f"""
INSERT INTO kpi_day_histograms (day, channel, metric, key, bucket, n, lo, hi)
SELECT day, channel, metric, key, {BUCKET}, count(*), min(v), max(v)
FROM (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, channel, 'step' AS metric,
           status AS key, seconds AS v
    FROM order_steps WHERE created_at < {CLOSED} AT TIME ZONE 'UTC'
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, channel, 'end_to_end', '',
           CAST(extract(epoch FROM completed_at - received_at) AS double precision)
    FROM order_facts
    WHERE completed_at IS NOT NULL AND created_at < {CLOSED} AT TIME ZONE 'UTC'
    UNION ALL
    SELECT (f.created_at AT TIME ZONE 'UTC')::date, f.channel, 'approval_wait', a.role,
           CAST(extract(epoch FROM a.decided_at - a.requested_at) AS double precision)
    FROM approvals a JOIN order_facts f ON f.order_id = a.order_id
    WHERE a.decided_at IS NOT NULL AND f.created_at < {CLOSED} AT TIME ZONE 'UTC'
) x
GROUP BY 1, 2, 3, 4, 5
"""

BACKFILL_DAYS = f"""
WITH {DAYS}
INSERT INTO kpi_days (day) SELECT day FROM days WHERE day IS NOT NULL
"""

# One function for every trigger: the days (UTC) of the orders a row belongs to, old and new.
# Only days before today are marked: today's orders are read live, and a day is built once
# closed (see CLOSED). Row triggers with a WHEN clause, so a change to today's orders (most
# of the status writer's) runs no function at all. order_steps has none: its rows are only
# written with their order's facts (db/repo.py apply_status, db/kpis.py refresh_facts; a
# deleted order's facts go with its steps), and one mark per change is half the cost of two.
MARK = f"""
CREATE FUNCTION kpi_mark_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'approvals' THEN
        -- An approval counts for its order's day: look the order up.
        IF TG_OP = 'DELETE' THEN
            INSERT INTO kpi_dirty_days (day)
            SELECT (f.created_at AT TIME ZONE 'UTC')::date FROM order_facts f
            WHERE f.order_id = OLD.order_id AND f.created_at < {MIDNIGHT};
        ELSE
            INSERT INTO kpi_dirty_days (day)
            SELECT (f.created_at AT TIME ZONE 'UTC')::date FROM order_facts f
            WHERE f.order_id = NEW.order_id AND f.created_at < {MIDNIGHT};
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.created_at < {MIDNIGHT} THEN
        INSERT INTO kpi_dirty_days (day) VALUES ((OLD.created_at AT TIME ZONE 'UTC')::date);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.created_at IS DISTINCT FROM OLD.created_at
                            AND NEW.created_at < {MIDNIGHT}) THEN
        INSERT INTO kpi_dirty_days (day) VALUES ((NEW.created_at AT TIME ZONE 'UTC')::date);
    END IF;
    RETURN NULL;
END $$;
"""

TRIGGERS = [
    ("order_facts", "INSERT", f"NEW.created_at < {MIDNIGHT}"),
    ("order_facts", "UPDATE", f"OLD.created_at < {MIDNIGHT} OR NEW.created_at < {MIDNIGHT}"),
    ("order_facts", "DELETE", f"OLD.created_at < {MIDNIGHT}"),
    ("approvals", "INSERT", "NEW.decided_at IS NOT NULL"),
    (
        "approvals",
        "UPDATE",
        "OLD.decided_at IS DISTINCT FROM NEW.decided_at OR OLD.role IS DISTINCT FROM NEW.role"
        " OR OLD.requested_at IS DISTINCT FROM NEW.requested_at",
    ),
    ("approvals", "DELETE", "OLD.decided_at IS NOT NULL"),
]


def trigger_name(table: str, event: str) -> str:
    return f"kpi_mark_{table}_{event.lower()}"


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "kpi_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table("kpi_dirty_days", sa.Column("day", sa.Date(), nullable=False))
    counts = [
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
    ]
    op.create_table(
        "kpi_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        *(sa.Column(c, sa.BigInteger(), nullable=False) for c in counts),
        sa.PrimaryKeyConstraint("day", "channel"),
    )
    op.create_table(
        "kpi_day_histograms",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("metric", sa.String(20), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("lo", sa.Double(), nullable=False),
        sa.Column("hi", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("day", "channel", "metric", "key", "bucket"),
    )
    op.execute(BACKFILL_COUNTS)
    op.execute(BACKFILL_HISTOGRAMS)
    op.execute(BACKFILL_DAYS)
    op.execute(MARK)
    for table, event, when in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger_name(table, event)} AFTER {event} ON {table} "
            f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION kpi_mark_day()"
        )
    # The approvals inbox: urgent orders' pending levels first, without reading every
    # pending level's order (api/routes/approvals.py inbox_page).
    op.create_index(
        "ix_orders_urgent", "orders", ["id"], postgresql_where=sa.text("priority = 'urgent'")
    )
    op.execute(
        "CREATE TRIGGER kpi_mark_orders_failure_reason AFTER UPDATE OF failure_reason ON orders "
        "FOR EACH ROW WHEN (OLD.failure_reason IS DISTINCT FROM NEW.failure_reason "
        f"AND OLD.created_at < {MIDNIGHT}) EXECUTE FUNCTION kpi_mark_day()"
    )


def downgrade() -> None:
    op.drop_index("ix_orders_urgent", table_name="orders")
    op.execute("DROP TRIGGER kpi_mark_orders_failure_reason ON orders")
    for table, event, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger_name(table, event)} ON {table}")
    op.execute("DROP FUNCTION kpi_mark_day()")
    op.drop_table("kpi_day_histograms")
    op.drop_table("kpi_day_counts")
    op.drop_table("kpi_dirty_days")
    op.drop_table("kpi_days")
