"""AlertWorkflow: one per alert (workflow id = dedup key), so an alert is stored once and
delivered once, with retries that outlive the order or the activity that raised it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.payloads import Alert

# A receiver that is down is retried for a day, backing off to every 10 minutes.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)


def alert_workflow_id(dedup_key: str) -> str:
    return f"alert-{dedup_key}"


@workflow.defn(name="AlertWorkflow")
class AlertWorkflow:
    @workflow.run
    async def run(self, alert: Alert) -> bool:
        """Store the alert and deliver it; False when it had been raised before."""
        fresh = await workflow.execute_local_activity(
            "notify.store_alert",
            alert,
            start_to_close_timeout=timedelta(seconds=15),
            retry_policy=STORE_RETRY,
            result_type=bool,
        )
        if fresh:
            await workflow.execute_activity(
                "notify.deliver_alert",
                alert,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=DELIVERY_RETRY,
            )
        return fresh
