"""SQLAlchemy 2 models. Constraints make wrong data impossible, not just unlikely."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MONEY = Numeric(14, 2)


class Base(DeclarativeBase):
    pass


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("tier IN ('standard','silver','gold')", name="tier_known"),
        CheckConstraint("status IN ('active','on_hold','inactive')", name="status_known"),
        CheckConstraint("credit_limit >= 0", name="credit_limit_non_negative"),
        CheckConstraint("payment_terms_days >= 0", name="terms_non_negative"),
    )
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))
    credit_limit: Mapped[Decimal] = mapped_column(MONEY)
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    address_line1: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(20), default="active")
    # Whether this customer takes what is in stock now and the rest in a later shipment.
    allow_partial_shipment: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Customer notices (services/notices.py): an e-mail address and/or a signed webhook.
    notice_email: Mapped[str | None] = mapped_column(String(254))
    notice_webhook_url: Mapped[str | None] = mapped_column(String(500))
    notice_secret_nonce: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("unit_price >= 0", name="price_non_negative"),
        CheckConstraint("floor_price >= 0 AND floor_price <= unit_price", name="floor_le_price"),
        CheckConstraint("pack_size > 0", name="pack_size_positive"),
        CheckConstraint("min_order_qty > 0", name="moq_positive"),
    )
    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    floor_price: Mapped[Decimal] = mapped_column(MONEY)
    pack_size: Mapped[int] = mapped_column(Integer, default=1)
    min_order_qty: Mapped[int] = mapped_column(Integer, default=1)
    make_to_order: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    bin_location: Mapped[str] = mapped_column(String(20), default="A-00-00")
    # A class the priority rules can name (e.g. home-office); NULL: none (migration 0015).
    product_class: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = _now()


class Stock(Base):
    """On hand and reserved per SKU; the CHECKs are what make overselling impossible."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0", name="reserved_non_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_le_on_hand"),
    )
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    # Everything that ever left through a shipment; on_hand + reserved bookkeeping audit.
    shipped: Mapped[int] = mapped_column(BigInteger, default=0)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = _now()


class StockMovement(Base):
    """The stock ledger: one row per change of a SKU's on hand, written by db/stock.py in the
    same transaction as the change. `key` names what moved it (a reservation shipped, a
    replenishment received, a count line), so the same movement is never booked twice; an
    adjustment or a count also records who, why, and on hand before and after."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        UniqueConstraint("key", name="uq_stock_movements_key"),
        CheckConstraint(
            "kind IN ('opening','receipt','shipment','return','adjustment','count')",
            name="kind_known",
        ),
        Index("ix_stock_movements_sku_kind", "sku", "kind"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)  # signed: what on hand changed by
    at: Mapped[datetime] = _now()
    actor: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(Text)
    on_hand_before: Mapped[int | None] = mapped_column(Integer)
    on_hand_after: Mapped[int | None] = mapped_column(Integer)
    bin_location: Mapped[str | None] = mapped_column(String(20))


class StockCount(Base):
    """A cycle count, once per count id: its body's fingerprint and the answer it got, so
    the same count sent again answers the same and moves nothing."""

    __tablename__ = "stock_counts"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    counted_by: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = _now()
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)


class ProductSubstitute(Base):
    """What to offer instead of a product that is short, in the order to offer them."""

    __tablename__ = "product_substitutes"
    __table_args__ = (
        UniqueConstraint("sku", "substitute_sku", name="uq_product_substitutes_pair"),
        CheckConstraint("sku <> substitute_sku", name="not_itself"),
        CheckConstraint("position >= 0", name="position_non_negative"),
    )
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    substitute_sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total >= 0", name="total_non_negative"),
        UniqueConstraint("channel", "external_ref", name="uq_orders_channel_external_ref"),
        Index("ix_orders_customer", "customer_code", "status"),
        # Reads at scale (migration 0011): each list filter pages newest first by id (this
        # one replaced ix_orders_status); KPI windows select by created_at; `orderflow
        # stuck` reads open statuses by age.
        Index("ix_orders_status_id", "status", "id"),
        Index("ix_orders_channel_id", "channel", "id"),
        Index("ix_orders_customer_id", "customer_code", "id"),
        Index("ix_orders_created_at", "created_at"),
        Index("ix_orders_status_updated", "status", "updated_at"),
        # A customer's earlier orders (count, first date) for rule scopes (migration 0014).
        Index("ix_orders_customer_created", "customer_code", "created_at"),
        # The approvals inbox puts urgent orders first (migration 0018).
        Index("ix_orders_urgent", "id", postgresql_where="priority = 'urgent'"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_code: Mapped[str] = mapped_column(ForeignKey("customers.code"))
    channel: Mapped[str] = mapped_column(String(40))
    external_ref: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(30))
    awaiting_role: Mapped[str | None] = mapped_column(String(30))
    subtotal: Mapped[Decimal] = mapped_column(MONEY)
    order_discount: Mapped[Decimal] = mapped_column(MONEY, default=Decimal("0"))
    total: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    ship_to: Mapped[dict[str, Any]] = mapped_column(JSONB)
    requested_delivery_date: Mapped[date | None] = mapped_column(Date)
    special_instructions: Mapped[str | None] = mapped_column(Text)
    price_rules_version: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(100))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Ship what is in stock now and the rest later (resolved from the customer at intake).
    allow_partial: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # normal | urgent: orders the pick queue (docs/warehouse.md).
    priority: Mapped[str] = mapped_column(String(10), default="normal", server_default="normal")
    # Who set it: rule | caller | ops; only `rule` follows a rule change (domain/priority.py).
    priority_source: Mapped[str] = mapped_column(
        String(10), default="rule", server_default="rule"
    )
    # What routing judged (domain.routing.facts_to_json), replayed by the rules' dry run.
    routing_facts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no", name="uq_order_lines_order_line"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("reserved_qty >= 0 AND reserved_qty <= quantity", name="reserved_in_range"),
        CheckConstraint("shipped_qty >= 0 AND shipped_qty <= quantity", name="shipped_in_range"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    list_price: Mapped[Decimal] = mapped_column(MONEY)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    line_total: Mapped[Decimal] = mapped_column(MONEY)
    price_rule: Mapped[str] = mapped_column(Text)
    override_deviation: Mapped[Decimal | None] = mapped_column(MONEY)
    below_floor: Mapped[bool] = mapped_column(Boolean, default=False)
    discount_beyond_max: Mapped[bool] = mapped_column(Boolean, default=False)
    reserved_qty: Mapped[int] = mapped_column(Integer, default=0)
    shipped_qty: Mapped[int] = mapped_column(Integer, default=0)


class OrderEvent(Base):
    """The timeline. `step_key` makes each write idempotent: a retried step writes nothing new."""

    __tablename__ = "order_events"
    __table_args__ = (
        UniqueConstraint("order_id", "step_key", name="uq_order_events_step"),
        Index("ix_order_events_order_at", "order_id", "at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    step_key: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = _now()
    status: Mapped[str | None] = mapped_column(String(30))
    kind: Mapped[str] = mapped_column(String(30), default="status")
    actor: Mapped[str] = mapped_column(String(100), default="system")
    detail: Mapped[str] = mapped_column(Text, default="")


class OrderFact(Base):
    """One narrow row per order for the KPIs (db/kpis.py), kept by db/repo.py as the order
    moves (open_order, apply_status, compensations in record_event): what its timeline
    reached, without reading the timeline. Migration 0017 backfilled it from order_events."""

    __tablename__ = "order_facts"
    __table_args__ = (
        Index("ix_order_facts_created", "created_at"),
        Index("ix_order_facts_customer_created", "customer_code", "created_at"),
    )
    order_id: Mapped[str] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = _now()  # = orders.created_at (same transaction)
    channel: Mapped[str] = mapped_column(String(40))
    customer_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(30))  # current: = orders.status
    status_at: Mapped[datetime] = _now()  # when the current status's event was written
    validated: Mapped[bool] = mapped_column(Boolean, server_default=false())
    routed: Mapped[bool] = mapped_column(Boolean, server_default=false())
    approved: Mapped[bool] = mapped_column(Boolean, server_default=false())
    backordered: Mapped[bool] = mapped_column(Boolean, server_default=false())
    compensations: Mapped[int] = mapped_column(Integer, server_default="0")
    dated_deliveries: Mapped[int] = mapped_column(Integer, server_default="0")
    on_time: Mapped[int] = mapped_column(Integer, server_default="0")
    ordered_qty: Mapped[int] = mapped_column(BigInteger, server_default="0")
    shipped_qty: Mapped[int] = mapped_column(BigInteger, server_default="0")
    received_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OrderStep(Base):
    """One row per finished step of an order's timeline: a status and the seconds until the
    order's next status (the KPIs' step times), written by apply_status when the next one
    comes. Carries the order's KPI filters so a window reads this table alone."""

    __tablename__ = "order_steps"
    __table_args__ = (
        Index("ix_order_steps_created", "created_at"),
        Index("ix_order_steps_customer_created", "customer_code", "created_at"),
        Index("ix_order_steps_order", "order_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(40))
    customer_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(30))
    seconds: Mapped[float] = mapped_column(Double)


class KpiDay(Base):
    """A closed day (UTC) whose KPI rollup rows are built (db/kpis.py, migration 0018)."""

    __tablename__ = "kpi_days"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    built_at: Mapped[datetime] = _now()


# A closed day whose facts or approvals changed after its rollup was built, written by
# triggers (migration 0018); db/kpis.py rebuilds the day and deletes its marks. Plain inserts
# into a table without a key: a writer never waits on another's mark, and a mark is one heap
# row (no index, no sequence).
kpi_dirty_days = Table("kpi_dirty_days", Base.metadata, Column("day", Date, nullable=False))


class KpiDayCounts(Base):
    """The KPI counts of one closed day's orders (by created_at, UTC) in one channel: sums of
    order_facts, so any window of whole days adds them up exactly."""

    __tablename__ = "kpi_day_counts"
    __table_args__ = (PrimaryKeyConstraint("day", "channel"),)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(40))
    orders: Mapped[int] = mapped_column(BigInteger)
    completed: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    invalid_in_flow: Mapped[int] = mapped_column(BigInteger)
    validated: Mapped[int] = mapped_column(BigInteger)
    touchless: Mapped[int] = mapped_column(BigInteger)
    approved: Mapped[int] = mapped_column(BigInteger)
    backordered: Mapped[int] = mapped_column(BigInteger)
    compensations: Mapped[int] = mapped_column(BigInteger)
    shipped_qty: Mapped[int] = mapped_column(BigInteger)  # approved orders'
    ordered_qty: Mapped[int] = mapped_column(BigInteger)  # approved orders'
    shipped_all: Mapped[int] = mapped_column(BigInteger)  # every order's (returns rates)
    dated_deliveries: Mapped[int] = mapped_column(BigInteger)
    on_time: Mapped[int] = mapped_column(BigInteger)


class KpiDayHistogram(Base):
    """Durations of one closed day's orders in one channel (step seconds by status, end to
    end, approval waits by role) as counts in log-spaced buckets 2 % wide, with each bucket's
    smallest and largest value: percentiles over any window of whole days come within one
    bucket of the exact ones (exact where a bucket holds one value or equal values)."""

    __tablename__ = "kpi_day_histograms"
    __table_args__ = (PrimaryKeyConstraint("day", "channel", "metric", "key", "bucket"),)
    day: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(40))
    metric: Mapped[str] = mapped_column(String(20))  # step, end_to_end, approval_wait
    key: Mapped[str] = mapped_column(String(40))  # the status, the role, or ''
    bucket: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)
    lo: Mapped[float] = mapped_column(Double)
    hi: Mapped[float] = mapped_column(Double)


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        # A line can be reserved in several goes (partial shipment): one row per go.
        UniqueConstraint("order_line_id", "seq", name="uq_reservations_line_seq"),
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        CheckConstraint("status IN ('active','released','consumed')", name="status_known"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="active")
    seq: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The shipment that took these goods out (set when the reservation is consumed).
    shipment_no: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _now()
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PickBatch(Base):
    """What the warehouse floor walks (manual mode): one order's pick list (`single`) or a
    wave of small orders' lists in one walk (`wave`); docs/warehouse.md."""

    __tablename__ = "pick_batches"
    __table_args__ = (
        CheckConstraint("kind IN ('single','wave')", name="kind_known"),
        CheckConstraint(
            "status IN ('forming','open','confirmed','cancelled')", name="status_known"
        ),
        Index("ix_pick_batches_status", "status"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(10))
    # forming (a wave still gathering orders) -> open (on the floor) -> confirmed.
    status: Mapped[str] = mapped_column(String(20), default="open")
    # [{sku, bin_location, sequence, quantity, order_id}] in walking order.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    distance_m: Mapped[Decimal | None] = mapped_column(Numeric(10, 1))
    by_code_m: Mapped[Decimal | None] = mapped_column(Numeric(10, 1))
    # A forming wave goes to the floor at this time at the latest.
    release_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class PickList(Base):
    __tablename__ = "pick_lists"
    __table_args__ = (
        UniqueConstraint("order_id", "wave", "attempt", name="uq_pick_lists_order_wave"),
        CheckConstraint(
            "status IN ('open','picked','short','packed','cancelled')", name="status_known"
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    # One pick list per shipment of the order (1, 2, ... with partial shipment).
    wave: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Manual mode: a short pick without partial shipment picks the shipment again.
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(20), default="open")
    # [{sku, bin_location, quantity}] in walking order (by bin location); manual mode adds
    # `sequence` and, once confirmed, `picked`.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    packages: Mapped[int | None] = mapped_column(Integer)
    # Manual mode: the floor's list it is walked on, and when it was picked and packed.
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("pick_batches.id", ondelete="SET NULL"), index=True
    )
    picked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    packed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class Package(Base):
    """A parcel the floor packed (manual mode), as the carrier booking takes it."""

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("order_id", "shipment_no", "seq", name="uq_packages_order_no_seq"),
        CheckConstraint(
            "weight_kg > 0 AND length_cm > 0 AND width_cm > 0 AND height_cm > 0",
            name="dimensions_positive",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    shipment_no: Mapped[int] = mapped_column(Integer, default=1)
    seq: Mapped[int] = mapped_column(Integer)
    weight_kg: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    length_cm: Mapped[Decimal] = mapped_column(Numeric(8, 1))
    width_cm: Mapped[Decimal] = mapped_column(Numeric(8, 1))
    height_cm: Mapped[Decimal] = mapped_column(Numeric(8, 1))
    created_at: Mapped[datetime] = _now()


class Shipment(Base):
    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("order_id", "shipment_no", name="uq_shipments_order_no"),
        UniqueConstraint("tracking_number", name="uq_shipments_tracking"),
        CheckConstraint(
            "status IN ('booked','in_transit','delivered','exception','cancelled','lost')",
            name="status_known",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    shipment_no: Mapped[int] = mapped_column(Integer, default=1)
    tracking_number: Mapped[str] = mapped_column(String(60))
    carrier: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="booked")
    packages: Mapped[int] = mapped_column(Integer, default=1)
    booked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("order_id", "shipment_no", name="uq_invoices_order_shipment"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
    )
    number: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    customer_code: Mapped[str] = mapped_column(ForeignKey("customers.code"))
    # One invoice per shipment: it bills what that shipment took out.
    shipment_no: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    amount: Mapped[Decimal] = mapped_column(MONEY)
    issued_at: Mapped[datetime] = _now()
    due_date: Mapped[date] = mapped_column(Date)
    credited: Mapped[bool] = mapped_column(Boolean, default=False)


class Receivable(Base):
    __tablename__ = "receivables"
    __table_args__ = (
        UniqueConstraint("invoice_number", name="uq_receivables_invoice"),
        CheckConstraint("open_amount >= 0 AND open_amount <= amount", name="open_in_range"),
        Index("ix_receivables_customer_open", "customer_code", "open_amount"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    invoice_number: Mapped[str] = mapped_column(ForeignKey("invoices.number"))
    customer_code: Mapped[str] = mapped_column(ForeignKey("customers.code"))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    open_amount: Mapped[Decimal] = mapped_column(MONEY)
    due_date: Mapped[date] = mapped_column(Date)
    # When it was paid in full (late: after due_date); rule scopes read the payment record.
    paid_at: Mapped[date | None] = mapped_column(Date)


class Payment(Base):
    """A payment received against an invoice (docs/returns.md "Payments"): it lowers the
    receivable's open amount, once per invoice and reference (migration 0016)."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("invoice_number", "reference", name="uq_payments_reference"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    invoice_number: Mapped[str] = mapped_column(ForeignKey("invoices.number"))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    paid_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(100))
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = _now()


class CreditNote(Base):
    __tablename__ = "credit_notes"
    __table_args__ = (
        # One whole-invoice credit note (a compensation) per invoice; a return credits
        # part of an invoice, once per return (migration 0012).
        Index(
            "uq_credit_notes_invoice",
            "invoice_number",
            unique=True,
            postgresql_where="return_id IS NULL",
        ),
        UniqueConstraint("return_id", "invoice_number", name="uq_credit_notes_return_invoice"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )
    number: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_number: Mapped[str] = mapped_column(ForeignKey("invoices.number"))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    reason: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[datetime] = _now()
    # The return (RMA) it credits; None for a compensation's whole-invoice credit note.
    return_id: Mapped[str | None] = mapped_column(ForeignKey("returns.id"))


class Return(Base):
    """A return (RMA) of some shipped units of an order: its own ReturnWorkflow."""

    __tablename__ = "returns"
    __table_args__ = (
        CheckConstraint(
            "status IN ('requested','awaiting_approval','approved','refused','received',"
            "'credited','completed','cancelled')",
            name="status_known",
        ),
        CheckConstraint(
            "reason IN ('damaged','wrong_item','not_needed','defective','other')",
            name="reason_known",
        ),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_returns_idempotency"),
        Index("ix_returns_order", "order_id"),
        Index("ix_returns_status", "status", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    # The value of the lines asked for (order prices less the discount share).
    amount: Mapped[Decimal] = mapped_column(MONEY)
    days_since_delivery: Mapped[int] = mapped_column(Integer)
    awaiting_role: Mapped[str | None] = mapped_column(String(30))
    approval_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    credited_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    idempotency_scope: Mapped[str | None] = mapped_column(String(60))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ReturnLineRow(Base):
    __tablename__ = "return_lines"
    __table_args__ = (
        UniqueConstraint("return_id", "sku", name="uq_return_lines_sku"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("received_qty >= 0 AND received_qty <= quantity", name="received_in_range"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    return_id: Mapped[str] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    received_qty: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ReturnReceipt(Base):
    """What came back per SKU and where it went: written once per return, SKU and
    condition, and the stock moves only with that first write (db/stock.py)."""

    __tablename__ = "return_receipts"
    __table_args__ = (
        UniqueConstraint("return_id", "sku", "condition", name="uq_return_receipts_step"),
        CheckConstraint("condition IN ('restock','quarantine','scrap')", name="condition_known"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    return_id: Mapped[str] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    condition: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int] = mapped_column(Integer)
    # Restocked units taken off available stock again (the return's compensation).
    undone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    received_by: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = _now()


class HeldStock(Base):
    """Returned units in the warehouse that no order may take: quarantine and scrap."""

    __tablename__ = "held_stock"
    __table_args__ = (
        CheckConstraint("location IN ('quarantine','scrap')", name="location_known"),
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),
    )
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    location: Mapped[str] = mapped_column(String(20), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = _now()


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("order_id", "level", name="uq_approvals_order_level"),
        # The inbox, oldest first (migration 0011): a role's, and every role's (admin).
        Index("ix_approvals_pending", "status", "role", "requested_at", "id"),
        Index("ix_approvals_pending_age", "status", "requested_at", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    level: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = _now()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_users_token_hash"),
        # Only a channel token carries a channel (tokens from before 0006 may carry none:
        # they are refused wherever a channel is needed).
        CheckConstraint("channel IS NULL OR role = 'channel'", name="channel_only_for_channel"),
        CheckConstraint("active OR revoked_at IS NOT NULL", name="inactive_is_revoked"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(30))
    # SHA-256 of the token: tokens are random 32-byte secrets, so no salt or KDF is needed.
    token_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The one channel a `channel` token may act for.
    channel: Mapped[str | None] = mapped_column(String(40))
    # Made from ORDERFLOW_BOOTSTRAP_TOKEN: retired when that value changes.
    bootstrap: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class IdempotencyKey(Base):
    """A caller's Idempotency-Key and the answer it got: keys are per caller (`scope` is
    `user:<id>`, `token-channel:<name>` for every token of a channel, or, for a signed
    webhook, `channel:<name>`), so another caller's key is simply another key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),)
    scope: Mapped[str] = mapped_column(String(60))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    # The exact answer given the first time, replayed for a repeat of the same request.
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class RejectedAttempt(Base):
    """Audit of an order refused at entry: nothing else is written for it."""

    __tablename__ = "rejected_attempts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = _now()
    actor: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(40))
    customer_code: Mapped[str | None] = mapped_column(String(40))
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    problems: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("dedup_key", name="uq_alerts_dedup"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[str | None] = mapped_column(String(40))
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = _now()
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TierPrice(Base):
    """Price list: the unit price of a SKU for a tier."""

    __tablename__ = "tier_prices"
    __table_args__ = (CheckConstraint("unit_price >= 0", name="price_non_negative"),)
    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)


class QuantityBreak(Base):
    __tablename__ = "quantity_breaks"
    __table_args__ = (
        CheckConstraint("min_qty > 0", name="min_qty_positive"),
        CheckConstraint("percent_off > 0 AND percent_off < 100", name="percent_in_range"),
    )
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    min_qty: Mapped[int] = mapped_column(Integer, primary_key=True)
    percent_off: Mapped[Decimal] = mapped_column(Numeric(5, 2))


class Promotion(Base):
    __tablename__ = "promotions"
    __table_args__ = (
        CheckConstraint("kind IN ('percent','amount')", name="kind_known"),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'percent' OR value < 100", name="percent_below_100"),
        CheckConstraint("starts <= ends", name="dates_ordered"),
    )
    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[Decimal] = mapped_column(MONEY)
    sku: Mapped[str | None] = mapped_column(ForeignKey("products.sku"))
    starts: Mapped[date] = mapped_column(Date)
    ends: Mapped[date] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CustomerPrice(Base):
    __tablename__ = "customer_prices"
    __table_args__ = (CheckConstraint("unit_price >= 0", name="price_non_negative"),)
    customer_code: Mapped[str] = mapped_column(ForeignKey("customers.code"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)


class RoutingRuleRow(Base):
    __tablename__ = "routing_rules"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    condition: Mapped[str] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(30))
    position: Mapped[int] = mapped_column(Integer, default=100)
    threshold: Mapped[Decimal | None] = mapped_column(MONEY)
    on_timeout: Mapped[str] = mapped_column(String(10), default="reject")
    # domain.scopes.RuleScope as JSON; NULL: the rule applies to every customer.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class PriorityRuleRow(Base):
    """One condition that makes an order urgent (domain.priority.PriorityRule)."""

    __tablename__ = "priority_rules"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    position: Mapped[int] = mapped_column(Integer)
    condition: Mapped[str] = mapped_column(String(40))
    value: Mapped[str | None] = mapped_column(String(40))
    days: Mapped[int | None] = mapped_column(Integer)


class RuleVersion(Base):
    """A counter per rule kind (pricing, routing), bumped by every edit."""

    __tablename__ = "rule_versions"
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    changed_at: Mapped[datetime] = _now()
    changed_by: Mapped[str] = mapped_column(String(100), default="system")


class Replenishment(Base):
    """Stock on its way: its expected date answers 'when' for a short line at entry."""

    __tablename__ = "replenishments"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('open','received','cancelled')", name="status_known"),
        Index("ix_replenishments_open", "sku", "status", "expected_date"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    expected_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = _now()
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Channel(Base):
    """A signed-webhook channel. Only a random nonce is stored: the secret is derived from it
    with the deployment's key, so the database alone never reveals it."""

    __tablename__ = "channels"
    __table_args__ = (CheckConstraint("mapping IN ('generic','webshop')", name="mapping_known"),)
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    mapping: Mapped[str] = mapped_column(String(20))
    secret_nonce: Mapped[str] = mapped_column(String(64))
    default_customer_code: Mapped[str | None] = mapped_column(ForeignKey("customers.code"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Where the channel hears about its orders (customer notices), signed with its secret.
    notice_webhook_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _now()


class Import(Base):
    __tablename__ = "imports"
    __table_args__ = (
        CheckConstraint("status IN ('running','done','failed')", name="status_known"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    filename: Mapped[str] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(100))
    # Who uploaded it (names are not unique); None for imports from before migration 0008
    # whose name matched no single user: those are still matched by `created_by`.
    created_by_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", name="fk_imports_created_by_id_users")
    )
    status: Mapped[str] = mapped_column(String(20), default="running")
    total_rows: Mapped[int] = mapped_column(Integer)
    total_orders: Mapped[int] = mapped_column(Integer)
    header: Mapped[list[str]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportRow(Base):
    """One sheet row; rows with the same external reference form one order."""

    __tablename__ = "import_rows"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending','created','duplicate','rejected')", name="status_known"
        ),
        Index("ix_import_rows_pending", "import_id", "status", "external_ref"),
        Index("ix_import_rows_ref", "import_id", "external_ref"),
    )
    import_id: Mapped[int] = mapped_column(
        ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    )
    row_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_ref: Mapped[str] = mapped_column(String(200))
    cells: Mapped[list[Any]] = mapped_column(JSONB)  # the original row, as read
    status: Mapped[str] = mapped_column(String(20), default="pending")
    message: Mapped[str] = mapped_column(Text, default="")
    order_id: Mapped[str | None] = mapped_column(String(40))


class ProductionOrder(Base):
    """Make-to-order: one production order per order line of a make-to-order product."""

    __tablename__ = "production_orders"
    __table_args__ = (
        UniqueConstraint("order_line_id", name="uq_production_orders_line"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('open','completed','cancelled')", name="status_known"),
        Index("ix_production_orders_status", "status", "due_date"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id", ondelete="CASCADE"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="open")
    due_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_by: Mapped[str | None] = mapped_column(String(100))


class CustomerNotice(Base):
    """The customer-notice outbox: one row per order, event and receiver, written in the
    transaction of the status change (db/repo.py apply_status); services/notices.py sends."""

    __tablename__ = "customer_notices"
    __table_args__ = (
        UniqueConstraint("order_id", "event_key", "receiver", name="uq_customer_notices_event"),
        CheckConstraint("receiver IN ('email','webhook','channel')", name="receiver_known"),
        CheckConstraint("status IN ('pending','sent','failed')", name="status_known"),
        Index("ix_customer_notices_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(30))
    # The event and what makes it once: "shipped:2" for the second shipment, "disrupted:7".
    event_key: Mapped[str] = mapped_column(String(100))
    receiver: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    last_error: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    # The facts the notice was rendered from (the webhook's `data`), fixed at the first try.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Disruption(Base):
    """A SKU that cannot be reserved until a date (a supplier failure, a recall)."""

    __tablename__ = "disruptions"
    __table_args__ = (
        CheckConstraint("status IN ('active','lifted')", name="status_known"),
        Index(
            "uq_disruptions_active_sku",
            "sku",
            unique=True,
            postgresql_where="status = 'active'",
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    until: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    # The open orders it touched when it was declared: lifting wakes these.
    affected: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = _now()
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
