"""issue 17: priorities, bin layout, pick lists confirmed by people, packages, waves

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 18:30:00

Orders get a priority (normal | urgent). In manual warehouse mode the floor walks
`pick_batches` (one order's list, or a wave of small orders), confirms what it picked
(`pick_lists.picked_at`, a short pick may be picked again: `attempt`) and gives the
`packages` the carrier booking takes.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("priority", sa.String(10), server_default="normal", nullable=False),
    )
    op.create_table(
        "pick_batches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lines", postgresql.JSONB(), nullable=False),
        sa.Column("distance_m", sa.Numeric(10, 1), nullable=True),
        sa.Column("by_code_m", sa.Numeric(10, 1), nullable=True),
        sa.Column("release_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('single','wave')", name="kind_known"),
        sa.CheckConstraint(
            "status IN ('forming','open','confirmed','cancelled')", name="status_known"
        ),
    )
    op.create_index("ix_pick_batches_status", "pick_batches", ["status"])
    op.add_column(
        "pick_lists", sa.Column("attempt", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("pick_lists", sa.Column("batch_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_pick_lists_batch_id_pick_batches",
        "pick_lists",
        "pick_batches",
        ["batch_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index("ix_pick_lists_batch_id", "pick_lists", ["batch_id"])
    op.add_column("pick_lists", sa.Column("picked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("pick_lists", sa.Column("packed_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("uq_pick_lists_order_wave", "pick_lists", type_="unique")
    op.create_unique_constraint(
        "uq_pick_lists_order_wave", "pick_lists", ["order_id", "wave", "attempt"]
    )
    op.drop_constraint("status_known", "pick_lists", type_="check")
    op.create_check_constraint(
        "status_known", "pick_lists", "status IN ('open','picked','short','packed','cancelled')"
    )
    op.create_table(
        "packages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column(
            "order_id",
            sa.String(40),
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("shipment_no", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("weight_kg", sa.Numeric(8, 2), nullable=False),
        sa.Column("length_cm", sa.Numeric(8, 1), nullable=False),
        sa.Column("width_cm", sa.Numeric(8, 1), nullable=False),
        sa.Column("height_cm", sa.Numeric(8, 1), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("order_id", "shipment_no", "seq", name="uq_packages_order_no_seq"),
        sa.CheckConstraint(
            "weight_kg > 0 AND length_cm > 0 AND width_cm > 0 AND height_cm > 0",
            name="dimensions_positive",
        ),
    )


def downgrade() -> None:
    op.drop_table("packages")
    op.drop_constraint("status_known", "pick_lists", type_="check")
    op.create_check_constraint(
        "status_known", "pick_lists", "status IN ('open','packed','cancelled')"
    )
    op.drop_constraint("uq_pick_lists_order_wave", "pick_lists", type_="unique")
    op.create_unique_constraint("uq_pick_lists_order_wave", "pick_lists", ["order_id", "wave"])
    op.drop_column("pick_lists", "packed_at")
    op.drop_column("pick_lists", "picked_at")
    op.drop_index("ix_pick_lists_batch_id", "pick_lists")
    op.drop_constraint("fk_pick_lists_batch_id_pick_batches", "pick_lists", type_="foreignkey")
    op.drop_column("pick_lists", "batch_id")
    op.drop_column("pick_lists", "attempt")
    op.drop_index("ix_pick_batches_status", "pick_batches")
    op.drop_table("pick_batches")
    op.drop_column("orders", "priority")
