"""The order worker: registers the workflow and every activity on the task queue."""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows as workflows_package
from activities.approvals import ApprovalActivities
from activities.assessment import AssessmentActivities
from activities.billing import BillingActivities
from activities.fulfil import FulfilActivities
from activities.imports import ImportActivities
from activities.inventory import InventoryActivities
from activities.notify import NotifyActivities
from activities.orders import OrderActivities
from activities.reconcile import ReconcileActivities
from activities.returns import ReturnActivities
from activities.shipping import Carrier, ShippingActivities, SimulatedCarrier
from activities.substitution import SubstitutionActivities
from activities.warehouse import WarehouseActivities
from db.session import SessionFactory, make_engine, make_session_factory
from services.config import Settings
from services.notices import NoticeSender
from services.recovery import Recovery
from services.temporal import connect, metrics_runtime
from workers.interceptors import FailureAlerts
from workers.schedules import ensure_reconcile_schedule
from workflows.alert import AlertWorkflow
from workflows.imports import ImportWorkflow
from workflows.order import OrderWorkflow
from workflows.reconcile import ReconcileWorkflow
from workflows.returns import ReturnWorkflow

log = logging.getLogger("orderflow.worker")


def activities_for(
    sessions: SessionFactory, settings: Settings, carrier: Carrier, http: httpx.AsyncClient
) -> list[Callable[..., Any]]:
    """Every activity method, bound to real dependencies: listed one by one, so a new
    activity is registered on purpose and a renamed one is caught by the type checker."""
    assessment = AssessmentActivities(sessions, settings)
    approvals = ApprovalActivities(sessions, settings)
    inventory = InventoryActivities(sessions, settings)
    warehouse = WarehouseActivities(sessions, settings)
    billing = BillingActivities(sessions, settings)
    orders = OrderActivities(sessions, settings)
    imports = ImportActivities(sessions, settings)
    shipping = ShippingActivities(sessions, settings, carrier)
    notify = NotifyActivities(sessions, settings, http)
    fulfil = FulfilActivities(sessions, settings, shipping)
    reconcile = ReconcileActivities(sessions, settings)
    returns = ReturnActivities(sessions, settings)
    substitution = SubstitutionActivities(sessions, settings)
    return [
        assessment.assess_order,
        assessment.amend_order,
        approvals.open_level,
        approvals.record_decision,
        inventory.reserve,
        inventory.release,
        warehouse.create_pick_list,
        warehouse.pack,
        warehouse.cancel_pick_list,
        warehouse.open_floor,
        warehouse.release_wave,
        warehouse.record_pick,
        warehouse.record_packages,
        billing.invoice,
        billing.credit_note,
        orders.set_status,
        orders.note,
        imports.process_batch,
        imports.finish,
        shipping.book,
        shipping.track,
        shipping.record_shipment,
        shipping.record_delivery,
        shipping.cancel_shipment,
        shipping.mark_lost,
        notify.store_alert,
        notify.deliver_alert,
        notify.notify_role,
        fulfil.first_pass,
        fulfil.prepare,
        fulfil.ship_and_invoice,
        fulfil.deliver_and_complete,
        reconcile.check,
        returns.set_status,
        returns.note,
        returns.receive,
        returns.credit,
        returns.undo_receipt,
        substitution.substitute_line,
    ]


def default_carrier(settings: Settings) -> SimulatedCarrier:
    return SimulatedCarrier(
        settings.carrier_transit_seconds,
        settings.carrier_mode,
        settings.carrier_delay_seconds,
        ledger=settings.carrier_ledger,
    )


def precompile_workflows() -> None:
    """Write the workflow modules' bytecode. The sandbox executes them afresh for every
    workflow it starts; without a .pyc (PYTHONDONTWRITEBYTECODE, a fresh install) that meant
    compiling the source each time, a fifth of the worker's CPU under load."""
    folder = Path(workflows_package.__file__).parent
    with contextlib.suppress(OSError):
        compileall.compile_dir(str(folder), quiet=2)


# The order workflow's own modules: its class and the stages it owns. Stateless at module
# level (constants, classes, functions), so one import can serve every order.
ORDER_WORKFLOW_MODULES = (
    "workflows.order",
    "workflows.alert",
    "workflows.amendment",
    "workflows.approval",
    "workflows.compensation",
    "workflows.context",
    "workflows.delivery",
    "workflows.details",
    "workflows.floor",
    "workflows.fulfilment",
    "workflows.policies",
    "workflows.substitution",
    "workflows.text",
)


def workflow_runner(settings: Settings) -> SandboxedWorkflowRunner | UnsandboxedWorkflowRunner:
    """The sandbox, which runs every workflow on fresh imports of its modules (so module state
    cannot leak between runs, and non-deterministic calls fail at once). For the order
    workflow that re-import was 12 ms of CPU per order, a tenth of the worker's share: its
    modules are passed through (imported once). The sandbox still isolates each run's
    globals and checks every other module; the replay tests run the order workflow in the
    full sandbox, where a non-deterministic call in these modules still fails. Trusted code
    with replay tests may also run without the sandbox at all."""
    if not settings.workflow_sandbox:
        return UnsandboxedWorkflowRunner()
    if not settings.workflow_sandbox_passthrough:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*ORDER_WORKFLOW_MODULES)
    )


def import_activities(sessions: SessionFactory, settings: Settings) -> list[Callable[..., Any]]:
    """The import workflow's activities: all its own task queue's worker runs."""
    imports = ImportActivities(sessions, settings)
    return [imports.process_batch, imports.finish]


# An import's activity runs for minutes, creating orders side by side; a few imports at
# once per worker process is plenty (the rest wait in Temporal's queue).
IMPORT_WORKFLOW_TASKS = 2
IMPORT_ACTIVITIES = 4


@asynccontextmanager
async def order_worker(
    client: Client,
    sessions: SessionFactory,
    settings: Settings,
    *,
    task_queue: str | None = None,
    carrier: Carrier | None = None,
) -> AsyncIterator[Worker]:
    """A running worker for the order pipeline, and one for imports on their own task queue
    (`import_task_queue`); both stop (gracefully) when the block exits."""
    queue = task_queue or settings.task_queue
    import_queue = settings.resolved_import_task_queue if task_queue is None else f"{queue}-imports"
    precompile_workflows()
    alerts = FailureAlerts(client, queue, settings.alert_after_attempts)
    graceful = timedelta(seconds=settings.worker_graceful_shutdown_seconds)
    async with httpx.AsyncClient(timeout=10) as http:
        worker = Worker(
            client,
            task_queue=queue,
            workflows=[
                OrderWorkflow,
                AlertWorkflow,
                # Imports started before they had a queue of their own finish here.
                ImportWorkflow,
                ReturnWorkflow,
                ReconcileWorkflow,
            ],
            workflow_runner=workflow_runner(settings),
            interceptors=[alerts],
            activities=activities_for(
                sessions, settings, carrier or default_carrier(settings), http
            ),
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_local_activities=settings.max_concurrent_local_activities,
            max_cached_workflows=settings.max_cached_workflows,
            # SIGTERM (a deploy, Ctrl-C on `up`): activities in flight get this long to
            # finish before they are cancelled; workflow tasks stop at once and resume on
            # another worker from their history.
            graceful_shutdown_timeout=graceful,
        )
        # The import's own queue: its workflow tasks never wait behind the order backlog
        # (which the import itself makes: every order it creates queues a workflow task).
        importer = Worker(
            client,
            task_queue=import_queue,
            workflows=[ImportWorkflow],
            workflow_runner=workflow_runner(settings),
            interceptors=[alerts],  # alerts go to the order queue, where AlertWorkflow runs
            activities=import_activities(sessions, settings),
            max_concurrent_workflow_tasks=IMPORT_WORKFLOW_TASKS,
            max_concurrent_activities=IMPORT_ACTIVITIES,
            max_concurrent_local_activities=IMPORT_WORKFLOW_TASKS,
            graceful_shutdown_timeout=graceful,
        )
        async with worker, importer:
            yield worker


async def run(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM."""
    if settings.worker_nice and hasattr(os, "nice"):
        os.nice(settings.worker_nice)
    sdk_bind = (
        f"{settings.host}:{settings.worker_sdk_metrics_port}"
        if settings.worker_sdk_metrics_port
        else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await _connect_patiently(settings, sdk_bind, stop)
    if client is None:
        return
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.host)
    engine = make_engine(settings.resolved_database_url)
    try:
        await serve(client, make_session_factory(engine), settings, stop)
    finally:
        await engine.dispose()
    log.info("worker stopped")


async def serve(
    client: Client, sessions: SessionFactory, settings: Settings, stop: asyncio.Event
) -> None:
    """The worker and its recovery loop (stranded orders and imports are started every
    `recovery_interval_seconds`) until `stop` is set."""
    async with order_worker(client, sessions, settings):
        log.info(
            "worker polling task queues %s and %s (imports)",
            settings.task_queue,
            settings.resolved_import_task_queue,
        )
        # The nightly books check (docs/reconcile.md): made or brought up to date here.
        await ensure_reconcile_schedule(client, settings)
        recovery = asyncio.create_task(Recovery(sessions, client, settings).run())
        # Customer notices leave from here, beside the orders, never in their way.
        http = httpx.AsyncClient(timeout=10.0)
        sender = asyncio.create_task(NoticeSender(sessions, settings, http).run())
        try:
            await stop.wait()
            log.info(
                "worker stopping: activities in flight get up to %.0f s to finish",
                settings.worker_graceful_shutdown_seconds,
            )
        finally:
            recovery.cancel()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await http.aclose()


async def _connect_patiently(
    settings: Settings, metrics_bind: str | None, stop: asyncio.Event
) -> Client | None:
    """Connect to Temporal, waiting (with backoff) while it is down rather than exiting:
    a worker started during a Temporal outage simply begins once the server answers. The
    SDK metrics runtime binds its port: it is made once, not on every attempt."""
    runtime = metrics_runtime(metrics_bind) if metrics_bind is not None else None
    delay = 0.5
    while not stop.is_set():
        try:
            return await connect(
                settings.resolved_temporal_address,
                settings.temporal_namespace,
                runtime=runtime,
            )
        except Exception as err:
            log.warning("Temporal not reachable (%s); retrying in %.0f s", err, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
    return None
