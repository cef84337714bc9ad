"""The Temporal Schedules the worker keeps: made at start, updated when the settings change."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from domain.reconcile import CheckRequest
from services.config import Settings
from workflows.reconcile import ReconcileWorkflow

log = logging.getLogger("orderflow.worker")


def reconcile_schedule(settings: Settings) -> Schedule:
    """Every night (`reconcile_cron`, UTC) one ReconcileWorkflow on the worker's queue;
    a run still going when the next is due makes the next one skip."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            CheckRequest(),
            id=f"reconcile-{settings.reconcile_schedule_id}",
            task_queue=settings.task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(cron_expressions=[settings.reconcile_cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> None:
    """Create the nightly reconciliation schedule, or bring an existing one in line with the
    settings (cron, task queue): idempotent, so every worker may run it at start. A refusal
    is logged, never fatal: the worker's orders matter more than tonight's check."""
    try:
        await _ensure(client, settings)
    except RPCError as err:
        log.error("schedule %s not made: %s", settings.reconcile_schedule_id, err)


async def _ensure(client: Client, settings: Settings) -> None:
    wanted = reconcile_schedule(settings)
    try:
        await client.create_schedule(settings.reconcile_schedule_id, wanted)
        log.info(
            "schedule %s created (%s)", settings.reconcile_schedule_id, settings.reconcile_cron
        )
        return
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep its state (a schedule ops paused stays paused); replace what it runs and when.
        schedule = current.description.schedule
        schedule.action, schedule.spec, schedule.policy = wanted.action, wanted.spec, wanted.policy
        return ScheduleUpdate(schedule=schedule)

    await client.get_schedule_handle(settings.reconcile_schedule_id).update(update)
