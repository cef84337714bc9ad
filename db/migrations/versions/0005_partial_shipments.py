"""partial shipments: several reservations per line, a pick list and an invoice per shipment

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "customers",
        sa.Column(
            "allow_partial_shipment", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )
    op.add_column(
        "orders",
        sa.Column("allow_partial", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "reservations", sa.Column("seq", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column("reservations", sa.Column("shipment_no", sa.Integer(), nullable=True))
    op.execute("UPDATE reservations SET shipment_no = 1 WHERE status = 'consumed'")
    op.drop_constraint("uq_reservations_line", "reservations", type_="unique")
    op.create_unique_constraint(
        "uq_reservations_line_seq", "reservations", ["order_line_id", "seq"]
    )
    op.add_column("pick_lists", sa.Column("wave", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint("uq_pick_lists_order", "pick_lists", type_="unique")
    op.create_unique_constraint("uq_pick_lists_order_wave", "pick_lists", ["order_id", "wave"])
    op.drop_constraint("status_known", "shipments", type_="check")
    op.create_check_constraint(
        "status_known",
        "shipments",
        "status IN ('booked','in_transit','delivered','exception','cancelled','lost')",
    )
    op.add_column(
        "invoices", sa.Column("shipment_no", sa.Integer(), server_default="1", nullable=False)
    )
    op.drop_constraint("uq_invoices_order", "invoices", type_="unique")
    op.create_unique_constraint(
        "uq_invoices_order_shipment", "invoices", ["order_id", "shipment_no"]
    )


def downgrade() -> None:
    op.drop_constraint("status_known", "shipments", type_="check")
    op.create_check_constraint(
        "status_known",
        "shipments",
        "status IN ('booked','in_transit','delivered','exception','cancelled')",
    )
    op.drop_constraint("uq_invoices_order_shipment", "invoices", type_="unique")
    op.create_unique_constraint("uq_invoices_order", "invoices", ["order_id"])
    op.drop_column("invoices", "shipment_no")
    op.drop_constraint("uq_pick_lists_order_wave", "pick_lists", type_="unique")
    op.create_unique_constraint("uq_pick_lists_order", "pick_lists", ["order_id"])
    op.drop_column("pick_lists", "wave")
    op.drop_constraint("uq_reservations_line_seq", "reservations", type_="unique")
    op.create_unique_constraint("uq_reservations_line", "reservations", ["order_line_id"])
    op.drop_column("reservations", "shipment_no")
    op.drop_column("reservations", "seq")
    op.drop_column("orders", "allow_partial")
    op.drop_column("customers", "allow_partial_shipment")
