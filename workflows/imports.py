"""ImportWorkflow: one per uploaded sheet. Resumable: the rows' state is in PostgreSQL, so a
crash (or a new worker) carries on with the rows still pending."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.policies import (
    IMPORT_BATCH_HEARTBEAT,
    IMPORT_BATCH_RETRY,
    IMPORT_BATCH_TIMEOUT,
    IMPORT_FINISH_TIMEOUT,
)

with workflow.unsafe.imports_passed_through():
    from activities.imports import ImportActivities
    from domain.imports import ImportInput

BATCHES_PER_RUN = 200  # then continue as new, keeping the history short


@workflow.defn(name="ImportWorkflow")
class ImportWorkflow:
    @workflow.run
    async def run(self, inp: ImportInput) -> None:
        for _ in range(BATCHES_PER_RUN):
            progress = await workflow.execute_activity_method(
                ImportActivities.process_batch,
                inp,
                start_to_close_timeout=IMPORT_BATCH_TIMEOUT,
                heartbeat_timeout=IMPORT_BATCH_HEARTBEAT,
                retry_policy=IMPORT_BATCH_RETRY,
            )
            if progress.remaining == 0:
                await workflow.execute_local_activity_method(
                    ImportActivities.finish,
                    inp,
                    start_to_close_timeout=IMPORT_FINISH_TIMEOUT,
                    retry_policy=IMPORT_BATCH_RETRY,
                )
                return
            await workflow.sleep(timedelta(seconds=inp.pause_seconds))
        workflow.continue_as_new(inp)
