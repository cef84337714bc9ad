"""One Settings object, read once from the environment (prefix ORDERFLOW_, plus TEMPORAL_*)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.layout import Layout


class Settings(BaseSettings):
    """Everything configurable about a deployment; unsafe or missing values fail at start-up."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    # Where the embedded stack keeps its data (PostgreSQL cluster, Temporal SQLite file, logs).
    home: Path = Path(".orderflow")

    # External services: when set, `orderflow up` uses them instead of starting its own.
    database_url: str | None = None
    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "ORDERFLOW_TEMPORAL_ADDRESS"),
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices("TEMPORAL_NAMESPACE", "ORDERFLOW_TEMPORAL_NAMESPACE"),
    )
    task_queue: str = "orders"
    # ImportWorkflow's own task queue (unset: `<task_queue>-imports`), polled by a worker of
    # its own in each worker process: an import's workflow tasks never wait behind the
    # backlog of orders (its own included) on the order queue.
    import_task_queue: str | None = None

    # Ports of the embedded stack.
    host: str = "127.0.0.1"
    api_port: int = 8000
    pg_port: int = 5544
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_ui_base: str | None = None
    # Where people open the API (and its console at /ui): the links in notices and alerts.
    # Unset: the API's own address (http://host:api_port), right only on that machine.
    public_url: str | None = None
    # The embedded Temporal's SQLite file in WAL mode without an fsync per commit (see
    # README, Performance); false keeps SQLite's default rollback journal.
    temporal_sqlite_wal: bool = True
    # Worker processes `orderflow up` starts (each with its own workflow cache).
    workers: int = Field(default=1, ge=1, le=16)

    bootstrap_token: str | None = None
    # Derives each channel's webhook secret; `orderflow up` makes one under `home` if unset.
    secret_key: str | None = None
    currency: str = "CNY"

    # Simulated carrier: seconds between booking and the carrier reporting delivery.
    carrier_transit_seconds: float = 10.0
    # Simulated carrier behaviour: normal | fail_transient | fail_permanent | slow.
    carrier_mode: str = "normal"
    carrier_delay_seconds: float = 0.0
    # Simulated carrier: a file where every booking and cancellation call is written, one
    # line each, as the carrier would see them (the crash tests count bookings with it).
    carrier_ledger: Path | None = None
    # How long a shipped order waits for a delivery confirmation before asking the carrier.
    delivery_poll_seconds: float = 10.0
    # POST /orders/{id}/cancel waits this long for the cancel to take effect; past it, a
    # cancel the order has accepted answers 202 (pending) instead of keeping the caller.
    cancel_wait_seconds: float = Field(default=20.0, gt=0, le=60)

    # Days an invoice may be overdue before the customer's orders need a credit controller.
    overdue_grace_days: int = 7

    # Outbound webhooks for on-call alerts and approver notices (logged when unset).
    alert_webhook_url: str | None = None
    notify_webhook_url: str | None = None
    # E-mail to approvers through SMTP when a host is set: role -> addresses.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "orderflow@localhost"
    role_emails: dict[str, list[str]] = {}
    # An activity failing this many attempts in a row for one order pages on-call once.
    alert_after_attempts: int = 3

    # Approval SLA per level, in seconds (reminder, escalation, final timeout).
    approval_reminder_seconds: float = 4 * 3600
    approval_escalation_seconds: float = 24 * 3600
    approval_timeout_seconds: float = 72 * 3600
    # How long a backordered order waits for stock before it is cancelled.
    backorder_max_seconds: float = 7 * 24 * 3600
    # Make-to-order: days from the order to the production order's due date.
    production_lead_days: int = 5
    # The warehouse floor the pick walk is planned on (docs/warehouse-layout.md), as JSON:
    # ORDERFLOW_WAREHOUSE_LAYOUT='{"aisle_spacing_m": 3.5, "zones": {"A": 0, "B": 42}}'.
    warehouse_layout: Layout = Layout()
    # Returns (docs/returns.md): approved by rule within this many days of delivery and up to
    # this amount; otherwise this role decides within the timeout, or the return is refused.
    returns_auto_days: int = Field(default=30, ge=0)
    returns_auto_amount: Decimal = Field(default=Decimal("1000.00"), ge=0)
    returns_approver_role: Literal["sales_manager", "director", "ops", "admin"] = "sales_manager"
    returns_approval_timeout_seconds: float = Field(default=72 * 3600, gt=0)
    returns_receive_timeout_seconds: float = Field(default=30 * 24 * 3600, gt=0)
    # Alerts when an order waits longer than expected: backordered, or shipped but undelivered.
    backorder_alert_seconds: float = 24 * 3600
    delivery_alert_seconds: float = 3 * 24 * 3600

    # The warehouse floor (docs/warehouse.md): `auto` picks and packs in the reserving step;
    # `manual` waits for people to confirm pick lists and give packages. Pinned per order.
    warehouse_mode: Literal["auto", "manual"] = "auto"
    # A pick list not confirmed, or a picked order not packed, within this raises an alert.
    pick_sla_seconds: float = Field(default=30 * 60, gt=0)
    pack_sla_seconds: float = Field(default=30 * 60, gt=0)
    # Waves: orders of at most this many lines and units (never urgent ones) share a walk,
    # released after this many seconds or once it holds this many orders.
    wave_max_lines: int = Field(default=3, ge=0)
    wave_max_units: int = Field(default=10, ge=0)
    wave_release_seconds: float = Field(default=10 * 60, gt=0)
    wave_max_orders: int = Field(default=8, ge=1)

    # Books against shelves (docs/reconcile.md): the nightly Temporal Schedule that checks
    # the stock ledger and the invoices, made or updated when a worker starts (cron in UTC).
    reconcile_schedule_id: str = Field(default="orderflow-reconcile-nightly", min_length=1)
    reconcile_cron: str = Field(default="30 2 * * *", min_length=9)
    # A shipment gets its invoice in the same step; one older than this without one is off.
    reconcile_invoice_grace_seconds: float = Field(default=15 * 60, ge=0)

    # Worker metrics: our Prometheus registry, and the Temporal SDK's own (unset: off).
    worker_metrics_port: int | None = None
    worker_sdk_metrics_port: int | None = None

    # Worker tuning. The workflow sandbox guards determinism at a CPU cost; the tests keep it.
    workflow_sandbox: bool = True
    # The sandbox re-imports the order workflow's modules for every order (12 ms of CPU
    # each); passed through they are imported once. Replay tests keep the full sandbox.
    workflow_sandbox_passthrough: bool = True
    uvloop: bool = True
    # The worker yields the CPU to the API and Temporal (os.nice): where they share cores,
    # intake stays quick while the pipeline runs flat out; alone on a machine it changes
    # nothing. 0 turns it off.
    worker_nice: int = Field(default=10, ge=0, le=19)
    # Slots: a worker takes no more tasks than it can finish in time. With 200 (the former
    # default) a saturated worker interleaved so many that workflow tasks and carrier
    # heartbeats timed out and were redone (455 + 242 in a 1,000-order run); with 8 none
    # did, and the worker's CPU per order fell by a quarter. Tasks beyond the slots wait in
    # Temporal's queue. Carrier calls mostly wait on the network, hence more of those.
    max_concurrent_workflow_tasks: int = 8
    max_concurrent_local_activities: int = 8
    max_concurrent_activities: int = 32
    # Each cached (sandboxed) order costs the worker about 125 KB; past this many, the least
    # recently used is evicted and replayed from its history when it next has work. Bounds
    # the worker's memory however many orders wait (see README, Performance).
    max_cached_workflows: int = 2000
    # SIGTERM lets activities in flight finish for this long before the worker exits.
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    # The worker starts orders and imports stored while Temporal was unreachable
    # (recovery.py), looking every this many seconds, for those older than the grace.
    recovery_interval_seconds: float = Field(default=5.0, gt=0)
    recovery_grace_seconds: float = Field(default=10.0, ge=0)
    # Customer notices (services/notices.py, docs/notices.md): a folder of templates that
    # replace the shipped ones by name, where e-mails go without SMTP (.eml files; unset:
    # `home`/outbox), SMTP as smtp://[user:pass@]host[:port], and the sender's pace.
    notice_templates: Path | None = None
    notice_outbox: Path | None = None
    smtp_url: str | None = None
    notice_interval_seconds: float = Field(default=2.0, gt=0)
    notice_backoff_seconds: float = Field(default=5.0, gt=0)
    notice_max_attempts: int = Field(default=10, ge=1)
    notice_delay_check_seconds: float = Field(default=60.0, gt=0)

    # Uploads and webhook bodies (docs/limits.md). A sheet is read only as wide as its header
    # and as long as `import_max_rows`; an .xlsx whose parts unpack to more than
    # `import_max_unzipped_bytes` is refused before it is parsed (a zip bomb).
    import_max_bytes: int = Field(default=32 * 2**20, ge=1024)
    import_max_rows: int = Field(default=100_000, ge=1)
    import_max_unzipped_bytes: int = Field(default=128 * 2**20, ge=2**20)
    webhook_max_bytes: int = Field(default=2**20, ge=1024)

    @field_validator("api_port", "pg_port", "temporal_port", "temporal_ui_port")
    @classmethod
    def _port_range(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"port {v} is outside 1..65535")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("ORDERFLOW_PUBLIC_URL must start with http:// or https://")
        return v

    @field_validator("bootstrap_token")
    @classmethod
    def _token_strength(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 16:
            raise ValueError("ORDERFLOW_BOOTSTRAP_TOKEN must be at least 16 characters")
        return v

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL of the application database (embedded one by default)."""
        if self.database_url:
            return normalise_db_url(self.database_url)
        return f"postgresql+psycopg://postgres@{self.host}:{self.pg_port}/orderflow"

    @property
    def resolved_import_task_queue(self) -> str:
        return self.import_task_queue or f"{self.task_queue}-imports"

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"{self.host}:{self.temporal_port}"

    @property
    def public_base_url(self) -> str:
        """The API's address for people (ORDERFLOW_PUBLIC_URL), without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.api_port}").rstrip("/")

    def console_order_url(self, order_id: str) -> str:
        """The console page of an order, as a notice or an alert links to it."""
        return f"{self.public_base_url}/ui/orders/{order_id}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://{self.host}:{self.temporal_ui_port}"

    @property
    def temporal_ui_public_url(self) -> str:
        """Where people open the Temporal UI (ORDERFLOW_TEMPORAL_UI_BASE for a real cluster)."""
        return self.temporal_ui_base or self.temporal_ui_url


def normalise_db_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return Settings()
