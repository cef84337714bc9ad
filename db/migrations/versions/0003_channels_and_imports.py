"""channels and imports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 19:39:30.779986
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total_rows", sa.Integer(), nullable=False),
        sa.Column("total_orders", sa.Integer(), nullable=False),
        sa.Column("header", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('running','done','failed')", name="status_known"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "channels",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("mapping", sa.String(length=20), nullable=False),
        sa.Column("secret_nonce", sa.String(length=64), nullable=False),
        sa.Column("default_customer_code", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("mapping IN ('generic','webshop')", name="mapping_known"),
        sa.ForeignKeyConstraint(
            ["default_customer_code"],
            ["customers.code"],
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "import_rows",
        sa.Column("import_id", sa.BigInteger(), nullable=False),
        sa.Column("row_no", sa.Integer(), nullable=False),
        sa.Column("external_ref", sa.String(length=200), nullable=False),
        sa.Column("cells", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending','created','duplicate','rejected')", name="status_known"
        ),
        sa.ForeignKeyConstraint(["import_id"], ["imports.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("import_id", "row_no"),
    )
    op.create_index(
        "ix_import_rows_ref", "import_rows", ["import_id", "external_ref"], unique=False
    )
    op.create_index(
        "ix_import_rows_pending",
        "import_rows",
        ["import_id", "status", "external_ref"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_import_rows_ref", table_name="import_rows")
    op.drop_index("ix_import_rows_pending", table_name="import_rows")
    op.drop_table("import_rows")
    op.drop_table("channels")
    op.drop_table("imports")
