"""issue 18: indexes for reads at scale, import speed

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 18:30:00
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# GET /orders pages newest first (ORDER BY id DESC) under each filter; the KPI windows
# select orders by created_at; `orderflow stuck` reads each open status by age.
INDEXES = {
    "ix_orders_status_id": ["status", "id"],
    "ix_orders_channel_id": ["channel", "id"],
    "ix_orders_customer_id": ["customer_code", "id"],
    "ix_orders_created_at": ["created_at"],
    "ix_orders_status_updated": ["status", "updated_at"],
}


# The approvals inbox reads pending levels oldest first, a role's or (admin) all of them:
# walked in that order, it stops after its page instead of sorting every pending level.
INBOX = ["status", "role", "requested_at", "id"]
INBOX_ALL = ["status", "requested_at", "id"]


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "orders", columns)
    # (status, id) serves every query (status) did.
    op.drop_index("ix_orders_status", table_name="orders")
    op.drop_index("ix_approvals_pending", table_name="approvals")
    op.create_index("ix_approvals_pending", "approvals", INBOX)
    op.create_index("ix_approvals_pending_age", "approvals", INBOX_ALL)


def downgrade() -> None:
    op.drop_index("ix_approvals_pending_age", table_name="approvals")
    op.drop_index("ix_approvals_pending", table_name="approvals")
    op.create_index("ix_approvals_pending", "approvals", ["status", "role"])
    op.create_index("ix_orders_status", "orders", ["status"])
    for name in INDEXES:
        op.drop_index(name, table_name="orders")
