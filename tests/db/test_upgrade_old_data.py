"""Migrations 0010-head on data the previous release (f8fe0d9, schema 0008) wrote.

The migrations' data steps were first written against empty databases; this test stops
before them, puts in rows the old code did write (stock counters moved by shipments,
receipts and PUT /inventory; a whole-invoice credit note of 0.00 for a 0.00 invoice, which
the old lost-shipment and compensation paths wrote: 0012's check refused it), and migrates
on. See docs/upgrade.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

from db.migrate import alembic_config
from orderflow.embedded import EmbeddedPostgres

OLD_ROWS = """
INSERT INTO customers (code, name, tier, credit_limit, payment_terms_days, address_line1,
                       city, postal_code, country, status)
VALUES ('C-OLD', 'Old Customer', 'standard', 50000, 30, '1 Road', 'Shanghai', '200000',
        'CN', 'active');
INSERT INTO products (sku, name, unit_price, floor_price, pack_size, min_order_qty,
                      make_to_order, active, bin_location)
VALUES ('SHIPPED', 'shipped some', 12.50, 10.00, 1, 1, false, true, 'A-01-01'),
       ('PUT', 'set by PUT /inventory', 18.00, 15.00, 1, 1, false, true, 'A-01-02'),
       ('QUIET', 'never moved', 4.20, 3.50, 1, 1, false, true, 'A-01-03');
INSERT INTO stock (sku, on_hand, reserved, received, shipped)
VALUES ('SHIPPED', 940, 0, 1050, 110), ('PUT', 777, 0, 1000, 0), ('QUIET', 0, 0, 0, 0);
INSERT INTO orders (id, customer_code, channel, status, subtotal, order_discount, total,
                    currency, ship_to, price_rules_version, created_by)
VALUES ('SO-OLD-1', 'C-OLD', 'web', 'failed', 0, 0, 0, 'CNY', '{}', 'v1', 'old'),
       ('SO-OLD-2', 'C-OLD', 'web', 'failed', 54, 0, 54, 'CNY', '{}', 'v1', 'old');
INSERT INTO invoices (number, order_id, customer_code, amount, due_date, credited)
VALUES ('INV-OLD-1', 'SO-OLD-1', 'C-OLD', 0.00, '2026-12-27', true),
       ('INV-OLD-2', 'SO-OLD-2', 'C-OLD', 54.00, '2026-12-27', true);
INSERT INTO receivables (invoice_number, customer_code, amount, open_amount, due_date)
VALUES ('INV-OLD-1', 'C-OLD', 0.00, 0.00, '2026-12-27'),
       ('INV-OLD-2', 'C-OLD', 54.00, 0.00, '2026-12-27');
INSERT INTO credit_notes (number, invoice_number, amount, reason)
VALUES ('CN-OLD-1', 'INV-OLD-1', 0.00, 'shipment lost in transit'),
       ('CN-OLD-2', 'INV-OLD-2', 54.00, 'shipment lost in transit');
"""


@pytest.fixture
def old_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own, migrated to 0009 (the last revision before a data step)."""
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = pg.url.rsplit("/", 1)[0] + "/" + name
        command.upgrade(alembic_config(url), "0009")
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _ledger(engine: Engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.sku, s.on_hand, coalesce(sum(m.quantity), 0) FROM stock s "
                "LEFT JOIN stock_movements m ON m.sku = s.sku GROUP BY s.sku, s.on_hand"
            )
        ).all()
    return {sku: (on_hand, total) for sku, on_hand, total in rows}


def test_old_release_data_migrates_to_head(old_db: str) -> None:
    engine = create_engine(old_db)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(OLD_ROWS)
        command.upgrade(alembic_config(old_db), "head")

        # 0010: every SKU's opening movements add up to its on hand.
        assert _ledger(engine) == {
            "SHIPPED": (940, 940),
            "PUT": (777, 777),
            "QUIET": (0, 0),
        }
        with engine.connect() as conn:
            # 0012: the old credit notes stay, the 0.00 one too (an issued document); both
            # invoices stay credited with nothing open ...
            kept = conn.execute(
                text("SELECT number, amount FROM credit_notes ORDER BY number")
            ).all()
            assert [(n, str(a)) for n, a in kept] == [("CN-OLD-1", "0.00"), ("CN-OLD-2", "54.00")]
            credited = conn.execute(
                text(
                    "SELECT i.number, i.credited, r.open_amount FROM invoices i "
                    "JOIN receivables r ON r.invoice_number = i.number ORDER BY i.number"
                )
            ).all()
            assert [(n, c, str(o)) for n, c, o in credited] == [
                ("INV-OLD-1", True, "0.00"),
                ("INV-OLD-2", True, "0.00"),
            ]
        # ... and a negative credit note is refused,
        with pytest.raises(IntegrityError, match="amount_not_negative"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO credit_notes (number, invoice_number, amount, reason) "
                    "VALUES ('CN-NEW-0', 'INV-OLD-2', -1.00, 'nothing')"
                )
            )
        # ... as is a second whole-invoice credit note of one invoice.
        with pytest.raises(IntegrityError, match="uq_credit_notes_invoice"), engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO credit_notes (number, invoice_number, amount, reason) "
                    "VALUES ('CN-NEW-2', 'INV-OLD-2', 1.00, 'again')"
                )
            )
    finally:
        engine.dispose()
