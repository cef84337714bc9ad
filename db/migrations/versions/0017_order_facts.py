"""issue 18: KPIs from precomputed facts

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27 19:30:00

`order_facts`: one narrow row per order with what its timeline reached (validated, routed to
an approver, approved, backordered, deliveries on time, compensations), its quantities and
its end-to-end times; `order_steps`: one row per finished step with its seconds until the
order's next status. db/repo.py keeps both as orders move; db/kpis.py reads them instead of
the timeline. Both are backfilled here from order_events, set-based (docs/performance.md).
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BACKFILL_FACTS = """
INSERT INTO order_facts (order_id, created_at, channel, customer_code, status, status_at,
                         validated, routed, approved, backordered, compensations,
                         dated_deliveries, on_time, ordered_qty, shipped_qty, received_at,
                         completed_at)
SELECT o.id, o.created_at, o.channel, o.customer_code, o.status,
       coalesce(t.last_at, o.created_at),
       coalesce(t.validated, false), coalesce(t.routed, false), coalesce(t.approved, false),
       coalesce(t.backordered, false), coalesce(t.compensations, 0),
       CASE WHEN o.requested_delivery_date IS NULL THEN 0 ELSE coalesce(t.deliveries, 0) END,
       coalesce(t.on_time, 0),
       coalesce(q.ordered, 0), coalesce(q.shipped, 0),
       coalesce(t.received_at, o.created_at), t.completed_at
FROM orders o
LEFT JOIN (
    SELECT order_id,
           bool_or(kind = 'status' AND status = 'validated') AS validated,
           bool_or(kind = 'status' AND status = 'awaiting_approval') AS routed,
           bool_or(kind = 'status' AND status = 'approved') AS approved,
           bool_or(kind = 'status' AND status = 'backordered') AS backordered,
           count(*) FILTER (WHERE kind = 'compensation') AS compensations,
           count(*) FILTER (WHERE kind = 'status' AND status = 'delivered') AS deliveries,
           count(*) FILTER (WHERE kind = 'status' AND status = 'delivered'
                              AND (at AT TIME ZONE 'UTC')::date <= rdd) AS on_time,
           max(at) FILTER (WHERE kind = 'status') AS last_at,
           min(at) FILTER (WHERE kind = 'status' AND status = 'received') AS received_at,
           max(at) FILTER (WHERE kind = 'status' AND status = 'completed') AS completed_at
    FROM (SELECT e.*, d.requested_delivery_date AS rdd
          FROM order_events e JOIN orders d ON d.id = e.order_id) e
    GROUP BY order_id
) t ON t.order_id = o.id
LEFT JOIN (
    SELECT order_id, sum(quantity) AS ordered, sum(shipped_qty) AS shipped
    FROM order_lines GROUP BY order_id
) q ON q.order_id = o.id
"""

BACKFILL_STEPS = """
INSERT INTO order_steps (order_id, created_at, channel, customer_code, status, seconds)
SELECT s.order_id, o.created_at, o.channel, o.customer_code, s.status,
       extract(epoch FROM s.took)
FROM (
    SELECT order_id, status,
           LEAD(at) OVER (PARTITION BY order_id ORDER BY at, id) - at AS took
    FROM order_events WHERE kind = 'status'
) s
JOIN orders o ON o.id = s.order_id
WHERE s.took IS NOT NULL
"""


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "order_facts",
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("customer_code", sa.String(40), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("status_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("validated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("routed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("approved", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("backordered", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("compensations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dated_deliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("on_time", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ordered_qty", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("shipped_qty", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "order_steps",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("customer_code", sa.String(40), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(BACKFILL_FACTS)
    op.execute(BACKFILL_STEPS)
    # Indexes after the backfill: one sorted build each instead of row-by-row inserts.
    op.create_index("ix_order_facts_created", "order_facts", ["created_at"])
    op.create_index(
        "ix_order_facts_customer_created", "order_facts", ["customer_code", "created_at"]
    )
    op.create_index("ix_order_steps_created", "order_steps", ["created_at"])
    op.create_index(
        "ix_order_steps_customer_created", "order_steps", ["customer_code", "created_at"]
    )
    op.create_index("ix_order_steps_order", "order_steps", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_steps")
    op.drop_table("order_facts")
