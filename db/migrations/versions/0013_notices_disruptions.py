"""issue 19: customer notices and SKU disruptions

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 18:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("notice_email", sa.String(254), nullable=True))
    op.add_column("customers", sa.Column("notice_webhook_url", sa.String(500), nullable=True))
    op.add_column("customers", sa.Column("notice_secret_nonce", sa.String(64), nullable=True))
    op.add_column("channels", sa.Column("notice_webhook_url", sa.String(500), nullable=True))
    op.create_table(
        "customer_notices",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("event", sa.String(30), nullable=False),
        sa.Column("event_key", sa.String(100), nullable=False),
        sa.Column("receiver", sa.String(20), nullable=False),
        sa.Column("address", sa.String(500), nullable=False),
        sa.Column("status", sa.String(20), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("receiver IN ('email','webhook','channel')", name="receiver_known"),
        sa.CheckConstraint("status IN ('pending','sent','failed')", name="status_known"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "event_key", "receiver", name="uq_customer_notices_event"),
    )
    op.create_index("ix_customer_notices_due", "customer_notices", ["status", "next_attempt_at"])
    op.create_table(
        "disruptions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), server_default="active", nullable=False),
        sa.Column(
            "affected",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("lifted_by", sa.String(100), nullable=True),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active','lifted')", name="status_known"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_disruptions_active_sku",
        "disruptions",
        ["sku"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("uq_disruptions_active_sku", table_name="disruptions")
    op.drop_table("disruptions")
    op.drop_index("ix_customer_notices_due", table_name="customer_notices")
    op.drop_table("customer_notices")
    op.drop_column("channels", "notice_webhook_url")
    op.drop_column("customers", "notice_secret_nonce")
    op.drop_column("customers", "notice_webhook_url")
    op.drop_column("customers", "notice_email")
