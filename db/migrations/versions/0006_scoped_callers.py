"""scoped callers: channel-bound and revocable tokens, idempotency keys per caller

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

Keys stored before this revision were global. Each is given the scope of the caller that
made its order: a signed webhook's key (`channel:NAME:...`, made by `channel:NAME`) the
channel's scope, any other the scope of the one user with the order's `created_by` name.
A key whose owner is ambiguous (two users of that name) or gone is kept under a scope no
caller has (`legacy:`): replaying it makes a new order rather than answering someone else.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("channel", sa.String(length=40), nullable=True))
    op.add_column(
        "users", sa.Column("bootstrap", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column("users", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    # The bootstrap token was the user named "bootstrap" that `orderflow up` made.
    op.execute("UPDATE users SET bootstrap = true WHERE name = 'bootstrap' AND role = 'admin'")
    op.execute("UPDATE users SET revoked_at = created_at WHERE NOT active")
    op.create_check_constraint(
        "channel_only_for_channel", "users", "channel IS NULL OR role = 'channel'"
    )
    op.create_check_constraint("inactive_is_revoked", "users", "active OR revoked_at IS NOT NULL")

    op.add_column("idempotency_keys", sa.Column("scope", sa.String(length=60), nullable=True))
    op.execute(
        """
        UPDATE idempotency_keys k SET scope = o.created_by
        FROM orders o
        WHERE o.id = k.order_id AND o.created_by LIKE 'channel:%'
          AND k.key LIKE o.created_by || ':%'
        """
    )
    op.execute(
        """
        UPDATE idempotency_keys k SET scope = 'user:' || u.id
        FROM orders o, users u
        WHERE k.scope IS NULL AND o.id = k.order_id AND u.name = o.created_by
          AND (SELECT count(*) FROM users v WHERE v.name = o.created_by) = 1
        """
    )
    op.execute("UPDATE idempotency_keys SET scope = 'legacy:' WHERE scope IS NULL")
    op.alter_column("idempotency_keys", "scope", nullable=False)
    op.drop_constraint("idempotency_keys_pkey", "idempotency_keys", type_="primary")
    op.create_primary_key("pk_idempotency_keys", "idempotency_keys", ["scope", "key"])


def downgrade() -> None:
    op.drop_constraint("pk_idempotency_keys", "idempotency_keys", type_="primary")
    # Global keys again: where two callers used one key, the older answer is kept.
    op.execute(
        """
        DELETE FROM idempotency_keys k USING idempotency_keys j
        WHERE k.key = j.key AND (k.created_at, k.scope) > (j.created_at, j.scope)
        """
    )
    op.create_primary_key("idempotency_keys_pkey", "idempotency_keys", ["key"])
    op.drop_column("idempotency_keys", "scope")
    op.drop_constraint("inactive_is_revoked", "users", type_="check")
    op.drop_constraint("channel_only_for_channel", "users", type_="check")
    op.drop_column("users", "revoked_at")
    op.drop_column("users", "bootstrap")
    op.drop_column("users", "channel")
