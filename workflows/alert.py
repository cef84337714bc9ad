"""AlertWorkflow: one per alert (workflow id = dedup key), so an alert is stored once and
delivered once, with retries that outlive the order or the activity that raised it."""

from __future__ import annotations

from temporalio import workflow

from workflows.policies import (
    ALERT_DELIVERY_RETRY,
    ALERT_DELIVERY_TIMEOUT,
    ALERT_DELIVERY_WINDOW,
    ALERT_STORE_RETRY,
    ALERT_STORE_TIMEOUT,
)

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from domain.alerts import Alert


def alert_workflow_id(dedup_key: str) -> str:
    return f"alert-{dedup_key}"


@workflow.defn(name="AlertWorkflow")
class AlertWorkflow:
    @workflow.run
    async def run(self, alert: Alert) -> bool:
        """Store the alert and deliver it; False when it had been raised before."""
        fresh: bool = await workflow.execute_local_activity_method(
            NotifyActivities.store_alert,
            alert,
            start_to_close_timeout=ALERT_STORE_TIMEOUT,
            retry_policy=ALERT_STORE_RETRY,
        )
        if fresh:
            await workflow.execute_activity_method(
                NotifyActivities.deliver_alert,
                alert,
                start_to_close_timeout=ALERT_DELIVERY_TIMEOUT,
                schedule_to_close_timeout=ALERT_DELIVERY_WINDOW,
                retry_policy=ALERT_DELIVERY_RETRY,
            )
        return fresh
