"""issue 19: payments against invoices

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27 19:00:00

`payments`: money received against an invoice, once per invoice and reference; each lowers
the receivable's open amount, and the one that brings it to zero sets `receivables.paid_at`
(which the `payment_record` rule scope reads).
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("invoice_number", sa.String(40), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.ForeignKeyConstraint(["invoice_number"], ["invoices.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("invoice_number", "reference", name="uq_payments_reference"),
    )


def downgrade() -> None:
    op.drop_table("payments")
