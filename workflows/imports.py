"""ImportWorkflow: one per uploaded sheet. Resumable: the rows' state is in PostgreSQL, so a
crash (or a new worker) carries on with the rows still pending."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.payloads import ImportInput, ImportProgress

BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
BATCHES_PER_RUN = 200  # then continue as new, keeping the history short


@workflow.defn(name="ImportWorkflow")
class ImportWorkflow:
    @workflow.run
    async def run(self, inp: ImportInput) -> None:
        for _ in range(BATCHES_PER_RUN):
            progress = await workflow.execute_activity(
                "imports.process_batch",
                inp,
                result_type=ImportProgress,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=BATCH_RETRY,
            )
            if progress.remaining == 0:
                await workflow.execute_local_activity(
                    "imports.finish",
                    inp,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=BATCH_RETRY,
                )
                return
            await workflow.sleep(timedelta(seconds=inp.pause_seconds))
        workflow.continue_as_new(inp)
