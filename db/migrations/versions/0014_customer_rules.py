"""issue 19: approval rules scoped by customer

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 18:30:00

A routing rule may carry a scope (JSON: tiers, channels, customer age, payment record). The
assessment reads each customer's earlier orders by (customer_code, created_at) and the
payment record from receivables.paid_at; it stores what it judged on the order
(orders.routing_facts) so that a dry run of a rule change replays the facts of the time.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("routing_rules", sa.Column("scope", postgresql.JSONB(), nullable=True))
    op.add_column("receivables", sa.Column("paid_at", sa.Date(), nullable=True))
    op.add_column("orders", sa.Column("routing_facts", postgresql.JSONB(), nullable=True))
    op.create_index(
        "ix_orders_customer_created", "orders", ["customer_code", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_orders_customer_created", table_name="orders")
    op.drop_column("orders", "routing_facts")
    op.drop_column("receivables", "paid_at")
    op.drop_column("routing_rules", "scope")
