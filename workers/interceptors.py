"""Worker interceptor: count activity failures and page on-call when one keeps failing."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.alerts import Alert
from workflows.alert import AlertWorkflow, alert_workflow_id

log = logging.getLogger("orderflow.worker")

ACTIVITY_FAILURES = Counter(
    "orderflow_activity_failures_total", "Activity attempts that failed", ["activity", "error"]
)


class FailureAlerts(Interceptor):
    """After `attempts` failed attempts of one activity for one workflow, raise one alert."""

    def __init__(self, client: Client, task_queue: str, attempts: int):
        self.client = client
        self.task_queue = task_queue
        self.attempts = attempts

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: FailureAlerts):
        super().__init__(next)
        self.owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as err:
            info = activity.info()
            ACTIVITY_FAILURES.labels(info.activity_type, type(err).__name__).inc()
            # A failing alert delivery must not raise alerts about itself.
            if info.attempt >= self.owner.attempts and not info.activity_type.startswith("notify."):
                await self._page(info, err)
            raise

    async def _page(self, info: activity.Info, err: Exception) -> None:
        workflow_id = info.workflow_id or ""  # None only for an activity started on its own
        order_id = workflow_id.removeprefix("order-")
        alert = Alert(
            dedup_key=f"{info.workflow_id}:{info.activity_type}:failing",
            kind="activity_failing",
            severity="critical",
            order_id=order_id if workflow_id.startswith("order-") else None,
            summary=f"{info.activity_type} has failed {info.attempt} times for "
            f"{info.workflow_id}: {err}",
            detail=repr(err),
        )
        try:
            await self.owner.client.start_workflow(
                AlertWorkflow.run,
                alert,
                id=alert_workflow_id(alert.dedup_key),
                task_queue=self.owner.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass
        except Exception as page_err:  # paging must never change the activity's outcome
            log.error("could not raise alert %s: %s", alert.dedup_key, page_err)
