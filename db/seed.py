"""Demo data: a few customers of each tier, 20 products (some with substitutes), stock.
Loading it twice is a no-op, and it never overwrites what a user changed (stock levels
included)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import stock
from db.models import Customer, Product, ProductSubstitute

CUSTOMERS = [
    # code, name, tier, credit limit, terms, city, status
    ("C-STD-1", "Harbour Hardware", "standard", "50000", 30, "Shanghai", "active"),
    ("C-STD-2", "Lotus Office Supply", "standard", "50000", 30, "Hangzhou", "active"),
    ("C-SLV-1", "Pearl River Builders", "silver", "200000", 45, "Guangzhou", "active"),
    ("C-SLV-2", "Northern Lights Retail", "silver", "200000", 45, "Harbin", "active"),
    ("C-GLD-1", "Great Wall Distribution", "gold", "1000000", 60, "Beijing", "active"),
    ("C-GLD-2", "Jade Mountain Trading", "gold", "1000000", 60, "Chengdu", "active"),
    ("C-HOLD-1", "Slow Payer Ltd", "standard", "20000", 30, "Wuhan", "on_hold"),
]

PRODUCTS = [
    # sku, name, price, floor, pack, moq, make_to_order, bin
    ("WID-001", "Widget, steel", "12.50", "10.00", 1, 1, False, "A-01-01"),
    ("WID-002", "Widget, brass", "18.00", "15.00", 1, 1, False, "A-01-02"),
    ("BOLT-M6", "Bolt M6 x 40 (box)", "4.20", "3.50", 10, 10, False, "A-02-01"),
    ("BOLT-M8", "Bolt M8 x 60 (box)", "6.80", "5.60", 10, 10, False, "A-02-02"),
    ("NUT-M6", "Nut M6 (box)", "2.10", "1.70", 10, 20, False, "A-02-03"),
    ("NUT-M8", "Nut M8 (box)", "2.90", "2.30", 10, 20, False, "A-02-04"),
    ("PIPE-20", "Copper pipe 20 mm, 3 m", "45.00", "38.00", 1, 1, False, "B-01-01"),
    ("PIPE-25", "Copper pipe 25 mm, 3 m", "58.00", "49.00", 1, 1, False, "B-01-02"),
    ("VALVE-20", "Ball valve 20 mm", "32.00", "26.00", 1, 1, False, "B-02-01"),
    ("VALVE-25", "Ball valve 25 mm", "41.00", "34.00", 1, 1, False, "B-02-02"),
    ("CABLE-2", "Cable 2.5 mm2, 100 m", "120.00", "100.00", 1, 1, False, "C-01-01"),
    ("CABLE-4", "Cable 4 mm2, 100 m", "185.00", "155.00", 1, 1, False, "C-01-02"),
    ("SWITCH-1", "Wall switch, single", "8.50", "6.80", 5, 5, False, "C-02-01"),
    ("SWITCH-2", "Wall switch, double", "11.90", "9.50", 5, 5, False, "C-02-02"),
    ("LAMP-LED", "LED panel 600x600", "64.00", "52.00", 2, 2, False, "D-01-01"),
    ("LAMP-TUBE", "LED tube 1.2 m", "9.90", "7.90", 10, 10, False, "D-01-02"),
    ("PAINT-W", "Paint, white, 10 l", "75.00", "62.00", 1, 1, False, "E-01-01"),
    ("PAINT-G", "Paint, grey, 10 l", "79.00", "65.00", 1, 1, False, "E-01-02"),
    ("CAB-STD", "Cabinet, standard", "480.00", "400.00", 1, 1, False, "F-01-01"),
    ("CAB-CUSTOM", "Cabinet, made to measure", "1450.00", "1200.00", 1, 1, True, "F-02-01"),
]

DEMO_STOCK = 1000

# What order entry offers, in this order, when a product is short.
SUBSTITUTES = {
    "WID-001": ["WID-002"],
    "WID-002": ["WID-001"],
    "PIPE-20": ["PIPE-25"],
    "VALVE-20": ["VALVE-25"],
    "CABLE-2": ["CABLE-4"],
    "PAINT-W": ["PAINT-G"],
    "LAMP-TUBE": ["LAMP-LED"],
    "CAB-CUSTOM": ["CAB-STD"],
}


async def load_demo_data(session: AsyncSession) -> None:
    """Insert the demo rows that are missing; leave existing rows alone."""
    await session.execute(
        insert(Customer)
        .values(
            [
                {
                    "code": c,
                    "name": n,
                    "tier": t,
                    "credit_limit": Decimal(limit),
                    "payment_terms_days": terms,
                    "address_line1": f"{i + 1} Demo Road",
                    "city": city,
                    "postal_code": f"{100000 + i}",
                    "country": "CN",
                    "status": status,
                }
                for i, (c, n, t, limit, terms, city, status) in enumerate(CUSTOMERS)
            ]
        )
        .on_conflict_do_nothing()
    )
    await session.execute(
        insert(Product)
        .values(
            [
                {
                    "sku": s,
                    "name": n,
                    "unit_price": Decimal(p),
                    "floor_price": Decimal(f),
                    "pack_size": pack,
                    "min_order_qty": moq,
                    "make_to_order": mto,
                    "bin_location": b,
                }
                for s, n, p, f, pack, moq, mto, b in PRODUCTS
            ]
        )
        .on_conflict_do_nothing()
    )
    await stock.seed(session, [s for s, *_ in PRODUCTS], DEMO_STOCK)
    # Only for a product with no substitutes yet: a list someone changed stays as it is.
    listed = set(await session.scalars(select(ProductSubstitute.sku).distinct()))
    rows = [
        {"sku": sku, "position": i, "substitute_sku": sub}
        for sku, subs in SUBSTITUTES.items()
        if sku not in listed
        for i, sub in enumerate(subs)
    ]
    if rows:
        await session.execute(insert(ProductSubstitute).values(rows).on_conflict_do_nothing())
    await session.commit()
