"""issue 17: stock reconciliation and cycle counts

The stock ledger (stock_movements) and cycle counts (stock_counts). Existing stock rows get
opening movements so that every SKU's ledger already adds up to its on hand: its receipts,
its shipments, and whatever the counters did not explain (an `opening` adjustment).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 18:30:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stock_movements",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("on_hand_before", sa.Integer(), nullable=True),
        sa.Column("on_hand_after", sa.Integer(), nullable=True),
        sa.Column("bin_location", sa.String(length=20), nullable=True),
        sa.CheckConstraint(
            "kind IN ('opening','receipt','shipment','return','adjustment','count')",
            name="kind_known",
        ),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_stock_movements_key"),
    )
    op.create_index("ix_stock_movements_sku_kind", "stock_movements", ["sku", "kind"])
    op.create_table(
        "stock_counts",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("counted_by", sa.String(length=100), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Opening balances: the ledger starts where the counters are.
    op.execute(
        """
        INSERT INTO stock_movements (sku, kind, key, quantity, reason)
        SELECT sku, 'receipt', 'opening-receipts:' || sku, received, 'received before the ledger'
          FROM stock WHERE received <> 0
        UNION ALL
        SELECT sku, 'shipment', 'opening-shipments:' || sku, -shipped, 'shipped before the ledger'
          FROM stock WHERE shipped <> 0
        UNION ALL
        SELECT sku, 'opening', 'opening-balance:' || sku, on_hand - received + shipped,
               'on hand the counters did not explain before the ledger'
          FROM stock WHERE on_hand - received + shipped <> 0
        """
    )


def downgrade() -> None:
    op.drop_table("stock_counts")
    op.drop_index("ix_stock_movements_sku_kind", table_name="stock_movements")
    op.drop_table("stock_movements")
