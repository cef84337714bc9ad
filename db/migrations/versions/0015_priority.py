"""issue 17: priority rules and product classes

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27 18:30:00

The rules that make an order urgent (`priority_rules`, versioned in `rule_versions` as
kind `priority`), who set an order's priority (`orders.priority_source`: rule | caller |
ops; only `rule` follows a rule change), and the class of a product a rule can name.
The column `orders.priority` itself comes with 0009.
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("priority_source", sa.String(10), server_default="rule", nullable=False),
    )
    op.add_column("products", sa.Column("product_class", sa.String(40), nullable=True))
    op.create_table(
        "priority_rules",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("condition", sa.String(40), nullable=False),
        sa.Column("value", sa.String(40), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("priority_rules")
    op.drop_column("products", "product_class")
    op.drop_column("orders", "priority_source")
