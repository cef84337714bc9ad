"""ReconcileWorkflow: the books checked against the shelves, every night by a Temporal
Schedule (workers/schedules.py) or now by POST /reconcile; a difference raises one alert
per run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from domain.reconcile import CheckRequest, Report, RunRequest, report_alert
    from workflows.alert import AlertWorkflow, alert_workflow_id

# A normal activity, not a local one: it reads every SKU's ledger, which on a big book is
# no short step. A read, so retrying it is harmless.
RECONCILE_TIMEOUT = timedelta(minutes=10)
RECONCILE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
)


@workflow.defn(name="ReconcileWorkflow")
class ReconcileWorkflow:
    @workflow.run
    async def run(self, req: CheckRequest) -> Report:
        """Check the books; when they do not balance, raise one alert for this run."""
        run_id = workflow.info().workflow_id
        report: Report = await workflow.execute_activity_method(
            ReconcileActivities.check,
            RunRequest(run_id=run_id, skus=req.skus),
            start_to_close_timeout=RECONCILE_TIMEOUT,
            retry_policy=RECONCILE_RETRY,
        )
        if not report.ok:
            alert = report_alert(report, run_id)
            try:
                # The alert outlives this run: stored and delivered by its own workflow.
                await workflow.start_child_workflow(
                    AlertWorkflow.run,
                    alert,
                    id=alert_workflow_id(alert.dedup_key),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                pass  # raised already by an earlier attempt of this run
        return report
