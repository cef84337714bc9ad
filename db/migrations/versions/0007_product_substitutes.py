"""product substitutes: what order entry offers instead of a product that is short

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09 10:00:00

An ordered list per product (position 0 first); a product is never its own substitute and
appears at most once in another's list.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_substitutes",
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("substitute_sku", sa.String(length=40), nullable=False),
        sa.CheckConstraint("sku <> substitute_sku", name="not_itself"),
        sa.CheckConstraint("position >= 0", name="position_non_negative"),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.ForeignKeyConstraint(["substitute_sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("sku", "position"),
        sa.UniqueConstraint("sku", "substitute_sku", name="uq_product_substitutes_pair"),
    )


def downgrade() -> None:
    op.drop_table("product_substitutes")
