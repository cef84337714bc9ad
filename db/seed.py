"""Demo data: a few customers of each tier, 20 products (some with substitutes), stock.
Loading it twice is a no-op, and it never overwrites what a user changed (stock levels
included)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update
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
    # sku, name, price, floor, pack, moq, make_to_order, bin (ZONE-AISLE-BAY-LEVEL), class
    # Zone A: small parts, aisles 1-10; zone B: bulky goods (docs/warehouse-layout.md).
    ("WID-001", "Widget, steel", "12.50", "10.00", 1, 1, False, "A-01-3-A", None),
    ("WID-002", "Widget, brass", "18.00", "15.00", 1, 1, False, "A-01-14-B", None),
    ("BOLT-M6", "Bolt M6 x 40 (box)", "4.20", "3.50", 10, 10, False, "A-02-6-A", None),
    ("BOLT-M8", "Bolt M8 x 60 (box)", "6.80", "5.60", 10, 10, False, "A-02-17-C", None),
    ("NUT-M6", "Nut M6 (box)", "2.10", "1.70", 10, 20, False, "A-03-4-B", None),
    ("NUT-M8", "Nut M8 (box)", "2.90", "2.30", 10, 20, False, "A-03-12-A", None),
    ("PIPE-20", "Copper pipe 20 mm, 3 m", "45.00", "38.00", 1, 1, False, "A-10-8-A", None),
    ("PIPE-25", "Copper pipe 25 mm, 3 m", "58.00", "49.00", 1, 1, False, "A-10-19-A", None),
    ("VALVE-20", "Ball valve 20 mm", "32.00", "26.00", 1, 1, False, "A-04-2-A", None),
    ("VALVE-25", "Ball valve 25 mm", "41.00", "34.00", 1, 1, False, "A-04-15-B", None),
    ("CABLE-2", "Cable 2.5 mm2, 100 m", "120.00", "100.00", 1, 1, False, "A-05-7-A", None),
    ("CABLE-4", "Cable 4 mm2, 100 m", "185.00", "155.00", 1, 1, False, "A-05-18-B", None),
    ("SWITCH-1", "Wall switch, single", "8.50", "6.80", 5, 5, False, "A-06-3-C", None),
    ("SWITCH-2", "Wall switch, double", "11.90", "9.50", 5, 5, False, "A-06-11-C", None),
    ("LAMP-LED", "LED panel 600x600", "64.00", "52.00", 2, 2, False, "A-09-5-A", "home-office"),
    ("LAMP-TUBE", "LED tube 1.2 m", "9.90", "7.90", 10, 10, False, "A-09-16-B", None),
    ("PAINT-W", "Paint, white, 10 l", "75.00", "62.00", 1, 1, False, "B-01-4-A", None),
    ("PAINT-G", "Paint, grey, 10 l", "79.00", "65.00", 1, 1, False, "B-01-9-A", None),
    ("CAB-STD", "Cabinet, standard", "480.00", "400.00", 1, 1, False, "B-02-6-A", "home-office"),
    (
        "CAB-CUSTOM",
        "Cabinet, made to measure",
        "1450.00",
        "1200.00",
        1,
        1,
        True,
        "B-03-12-A",
        "furniture",
    ),
]

# The bins the demo products had before they had a layout (issue 17): a database seeded
# then gets the new bins, unless someone moved the product since.
LEGACY_BINS = {
    "WID-001": "A-01-01",
    "WID-002": "A-01-02",
    "BOLT-M6": "A-02-01",
    "BOLT-M8": "A-02-02",
    "NUT-M6": "A-02-03",
    "NUT-M8": "A-02-04",
    "PIPE-20": "B-01-01",
    "PIPE-25": "B-01-02",
    "VALVE-20": "B-02-01",
    "VALVE-25": "B-02-02",
    "CABLE-2": "C-01-01",
    "CABLE-4": "C-01-02",
    "SWITCH-1": "C-02-01",
    "SWITCH-2": "C-02-02",
    "LAMP-LED": "D-01-01",
    "LAMP-TUBE": "D-01-02",
    "PAINT-W": "E-01-01",
    "PAINT-G": "E-01-02",
    "CAB-STD": "F-01-01",
    "CAB-CUSTOM": "F-02-01",
}

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
                    "product_class": cls,
                }
                for s, n, p, f, pack, moq, mto, b, cls in PRODUCTS
            ]
        )
        .on_conflict_do_nothing()
    )
    for sku, *_, new_bin, _cls in PRODUCTS:
        await session.execute(
            update(Product)
            .where(Product.sku == sku, Product.bin_location == LEGACY_BINS[sku])
            .values(bin_location=new_bin)
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


def demo_walk_report(orders: int = 500, seed: int = 17) -> str:
    """Metres walked on the demo layout: code order vs the planned walk, for one pick list
    of every demo product and for `orders` random demo orders of 2-8 lines (fixed seed)."""
    import random

    from domain.layout import plan_walk

    bins = {sku: b for sku, *_, b, _cls in PRODUCTS}
    all_walk = plan_walk(list(bins.values()))
    rng = random.Random(seed)
    by_code = walked = 0.0
    for _ in range(orders):
        walk = plan_walk(rng.sample(list(bins.values()), rng.randint(2, 8)))
        by_code += walk.by_code_m
        walked += walk.distance_m
    saved = 100 * (by_code - walked) / by_code
    return "\n".join(
        [
            f"every demo product ({len(bins)} bins): by code {all_walk.by_code_m:.1f} m, "
            f"walked {all_walk.distance_m:.1f} m, {all_walk.saved_pct:.1f}% shorter",
            f"  walk: {' '.join(list(bins.values())[i] for i in all_walk.order)}",
            f"{orders} demo orders of 2-8 lines: by code {by_code / orders:.1f} m, "
            f"walked {walked / orders:.1f} m per order on average, {saved:.1f}% shorter",
        ]
    )


if __name__ == "__main__":
    print(demo_walk_report())
