"""pricing routing replenishments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 18:31:35.937566
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("condition", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("on_timeout", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "rule_versions",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("kind"),
    )
    op.create_table(
        "customer_prices",
        sa.Column("customer_code", sa.String(length=40), nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.CheckConstraint("unit_price >= 0", name="price_non_negative"),
        sa.ForeignKeyConstraint(
            ["customer_code"],
            ["customers.code"],
        ),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["products.sku"],
        ),
        sa.PrimaryKeyConstraint("customer_code", "sku"),
    )
    op.create_table(
        "promotions",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=True),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("ends", sa.Date(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("kind <> 'percent' OR value < 100", name="percent_below_100"),
        sa.CheckConstraint("kind IN ('percent','amount')", name="kind_known"),
        sa.CheckConstraint("starts <= ends", name="dates_ordered"),
        sa.CheckConstraint("value > 0", name="value_positive"),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["products.sku"],
        ),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "quantity_breaks",
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("min_qty", sa.Integer(), nullable=False),
        sa.Column("percent_off", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.CheckConstraint("min_qty > 0", name="min_qty_positive"),
        sa.CheckConstraint("percent_off > 0 AND percent_off < 100", name="percent_in_range"),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["products.sku"],
        ),
        sa.PrimaryKeyConstraint("sku", "min_qty"),
    )
    op.create_table(
        "replenishments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("expected_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open','received','cancelled')", name="status_known"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["products.sku"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_replenishments_open", "replenishments", ["sku", "status", "expected_date"], unique=False
    )
    op.create_table(
        "tier_prices",
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.CheckConstraint("unit_price >= 0", name="price_non_negative"),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["products.sku"],
        ),
        sa.PrimaryKeyConstraint("tier", "sku"),
    )

    # The routing table starts with the documented defaults (README, "Approval routing").
    rules = sa.table(
        "routing_rules",
        sa.column("condition", sa.String),
        sa.column("role", sa.String),
        sa.column("position", sa.Integer),
        sa.column("threshold", sa.Numeric),
        sa.column("on_timeout", sa.String),
    )
    op.bulk_insert(
        rules,
        [
            {
                "condition": "credit_over_limit",
                "role": "credit_controller",
                "position": 10,
                "threshold": None,
                "on_timeout": "reject",
            },
            {
                "condition": "receivable_overdue",
                "role": "credit_controller",
                "position": 10,
                "threshold": None,
                "on_timeout": "reject",
            },
            {
                "condition": "price_below_floor",
                "role": "sales_manager",
                "position": 20,
                "threshold": None,
                "on_timeout": "reject",
            },
            {
                "condition": "discount_beyond_max",
                "role": "sales_manager",
                "position": 20,
                "threshold": None,
                "on_timeout": "reject",
            },
            {
                "condition": "total_above",
                "role": "sales_manager",
                "position": 20,
                "threshold": 100000,
                "on_timeout": "reject",
            },
            {
                "condition": "total_above",
                "role": "director",
                "position": 30,
                "threshold": 500000,
                "on_timeout": "reject",
            },
            {
                "condition": "special_instructions",
                "role": "ops",
                "position": 40,
                "threshold": None,
                "on_timeout": "reject",
            },
        ],
    )
    versions = sa.table(
        "rule_versions",
        sa.column("kind", sa.String),
        sa.column("version", sa.Integer),
        sa.column("changed_by", sa.String),
    )
    op.bulk_insert(
        versions,
        [
            {"kind": "pricing", "version": 1, "changed_by": "migration"},
            {"kind": "routing", "version": 1, "changed_by": "migration"},
        ],
    )


def downgrade() -> None:
    op.drop_table("tier_prices")
    op.drop_index("ix_replenishments_open", table_name="replenishments")
    op.drop_table("replenishments")
    op.drop_table("quantity_breaks")
    op.drop_table("promotions")
    op.drop_table("customer_prices")
    op.drop_table("rule_versions")
    op.drop_table("routing_rules")
