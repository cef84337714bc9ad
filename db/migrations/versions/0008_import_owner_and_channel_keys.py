"""import owner by user id; a channel token's idempotency keys belong to its channel

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00

Imports were visible to the user *named* like their creator, and names are not unique:
`imports.created_by_id` now says who. Existing imports get the id of the one user of their
creator's name; where that is ambiguous or gone it stays NULL (admins still see them).

A channel token's idempotency keys were scoped to the token (`user:ID`); they are now its
channel's (`token-channel:NAME`), so a rotated token keeps the keys of retries in flight.
Existing keys move with them unless that channel already holds the same key.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("imports", sa.Column("created_by_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_imports_created_by_id_users", "imports", "users", ["created_by_id"], ["id"]
    )
    op.execute(
        """
        UPDATE imports i SET created_by_id = u.id
        FROM users u
        WHERE u.name = i.created_by
          AND (SELECT count(*) FROM users v WHERE v.name = i.created_by) = 1
        """
    )
    # Oldest first, so where two tokens of one channel used one key the first one keeps it.
    op.execute(
        """
        UPDATE idempotency_keys k SET scope = 'token-channel:' || u.channel
        FROM users u
        WHERE u.role = 'channel' AND u.channel IS NOT NULL AND k.scope = 'user:' || u.id
          AND NOT EXISTS (
            SELECT 1 FROM idempotency_keys j
            WHERE j.scope = 'token-channel:' || u.channel AND j.key = k.key
          )
          AND k.created_at = (
            SELECT min(m.created_at) FROM idempotency_keys m, users w
            WHERE m.key = k.key AND w.role = 'channel' AND w.channel = u.channel
              AND m.scope = 'user:' || w.id
          )
        """
    )


def downgrade() -> None:
    # Keys under `token-channel:` stay: older code gives no caller that scope, so replaying
    # one makes a new order, as for any key whose owner is unknown (see 0006).
    op.drop_constraint("fk_imports_created_by_id_users", "imports", type_="foreignkey")
    op.drop_column("imports", "created_by_id")
