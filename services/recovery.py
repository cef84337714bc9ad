"""No stranded orders: start what was stored while Temporal was unreachable.

An order (API, webhook or import) is committed to PostgreSQL before its workflow is started;
when Temporal is down the client hears 503 and the order stays `received` with no workflow.
A loop in each worker process looks every few seconds for such orders, for imports still
`running` and for returns still `requested` (docs/returns.md), and starts their workflows
by their fixed ids: starting one that exists already is a no-op, so the loop, a client
retrying and a second worker can never start one twice. A PostgreSQL advisory lock lets one
worker at a time sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from db.models import Import, Order, Return, ReturnLineRow
from db.session import SessionFactory
from domain.imports import ImportInput
from domain.returns import (
    ReturnLine,
    ReturnPolicy,
    ReturnStatus,
    ReturnWorkflowInput,
    policy_of,
)
from domain.status import OrderStatus
from services.config import Settings
from services.intake import ensure_started
from services.temporal import existing_workflow_ids, workflow_id

log = logging.getLogger("orderflow.recovery")

LOCK_KEY = 0x0F10_57A2  # pg_try_advisory_xact_lock: one sweeper at a time
BATCH = 200
# An order found started is not asked about again for this long (a backlog of orders whose
# workflows have not reached their first step yet would otherwise cost a call each sweep).
REMEMBER_S = 300.0


class Recovery:
    """Sweeps for stranded orders and imports; `run` loops until cancelled."""

    def __init__(self, sessions: SessionFactory, client: Client, settings: Settings):
        self.sessions = sessions
        self.client = client
        self.settings = settings
        self._started: dict[str, float] = {}

    async def sweep(self) -> list[str]:
        """One pass; returns the ids of the orders and imports it (re)started."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.recovery_grace_seconds)
        now = time.monotonic()
        self._started = {k: t for k, t in self._started.items() if now - t < REMEMBER_S}
        done: list[str] = []
        async with self.sessions() as s:
            if not await s.scalar(select(func.pg_try_advisory_xact_lock(LOCK_KEY))):
                return done  # another worker is sweeping
            found = (
                await s.scalars(
                    select(Order.id)
                    .where(Order.status == OrderStatus.RECEIVED.value, Order.created_at <= cutoff)
                    .order_by(Order.created_at)
                    .limit(BATCH + len(self._started))
                )
            ).all()
            orders = [o for o in found if o not in self._started][:BATCH]
            # Under a backlog most are started but not run yet: one visibility query
            # spares them a start call each (on the worker and on Temporal).
            if orders:
                exist = await existing_workflow_ids(self.client, [workflow_id(o) for o in orders])
                for order_id in [o for o in orders if workflow_id(o) in exist]:
                    self._started[order_id] = now
                orders = [o for o in orders if workflow_id(o) not in exist]
            for order_id in orders:
                await ensure_started(s, self.client, self.settings, order_id)
                self._started[order_id] = now
                done.append(order_id)
            imports = (
                await s.scalars(
                    select(Import.id).where(Import.status == "running", Import.created_at <= cutoff)
                )
            ).all()
            # Returns stored while Temporal was down (no Idempotency-Key to retry with).
            returns = [
                inp
                for inp in await _stranded_returns(s, cutoff, policy_of(self.settings))
                if f"return-{inp.rma_id}" not in self._started
            ]
        for inp in returns:
            key = f"return-{inp.rma_id}"
            try:
                await self.client.start_workflow(
                    "ReturnWorkflow",
                    inp,
                    id=key,
                    task_queue=self.settings.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
            except WorkflowAlreadyStartedError:
                pass
            self._started[key] = now
            done.append(key)
        for import_id in imports:
            key = f"import-{import_id}"
            if key in self._started:
                continue
            try:
                await self.client.start_workflow(
                    "ImportWorkflow",
                    ImportInput(import_id=import_id),
                    id=key,
                    task_queue=self.settings.resolved_import_task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
            except WorkflowAlreadyStartedError:
                pass  # it ran already
            self._started[key] = now
            done.append(key)
        return done

    async def run(self) -> None:
        """Sweep every `recovery_interval_seconds`; an outage only delays the next sweep."""
        while True:
            try:
                started = await self.sweep()
                if started:
                    # Most were started already (a no-op); the rest were stranded.
                    log.info("recovery: made sure %d are started: %s", len(started), started[:10])
            except asyncio.CancelledError:
                raise
            except Exception as err:  # PostgreSQL or Temporal down: try at the next sweep
                log.warning("recovery sweep failed (retrying): %s", str(err).splitlines()[0])
            await asyncio.sleep(self.settings.recovery_interval_seconds)


async def _stranded_returns(
    s: AsyncSession, cutoff: datetime, policy: ReturnPolicy
) -> list[ReturnWorkflowInput]:
    """Returns still `requested` after the grace period: their workflow never started (its
    first step moves every return on), or started but not run yet (starting it is a no-op)."""
    rows = (
        await s.scalars(
            select(Return)
            .where(Return.status == ReturnStatus.REQUESTED.value, Return.created_at <= cutoff)
            .order_by(Return.created_at)
            .limit(BATCH)
        )
    ).all()
    out = []
    for rma in rows:
        lines = (
            await s.scalars(select(ReturnLineRow).where(ReturnLineRow.return_id == rma.id))
        ).all()
        out.append(
            ReturnWorkflowInput(
                rma_id=rma.id,
                order_id=rma.order_id,
                amount=rma.amount,
                days_since=rma.days_since_delivery,
                policy=policy,
                lines=[
                    ReturnLine(sku=ln.sku, quantity=ln.quantity, unit_price=ln.unit_price)
                    for ln in lines
                ],
            )
        )
    return out
