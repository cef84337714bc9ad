"""Bare Temporal skeletons for `orderflow bench --baseline`: one no-op step per pipeline
step, as normal activities or as local activities. They live in a module of their own, as
small as the order workflow's imports, so the bench's worker runs them exactly as the order
worker runs orders (same sandbox setting, same slots) and the ratio compares like with like.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

STEP_TIMEOUT = timedelta(seconds=30)


@activity.defn(name="bench.noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="BenchActivitySkeleton")
class ActivitySkeleton:
    @workflow.run
    async def run(self, steps: int) -> int:
        for i in range(steps):
            await workflow.execute_activity(noop, i, start_to_close_timeout=STEP_TIMEOUT)
        return steps


@workflow.defn(name="BenchLocalSkeleton")
class LocalSkeleton:
    @workflow.run
    async def run(self, steps: int) -> int:
        for i in range(steps):
            await workflow.execute_local_activity(noop, i, start_to_close_timeout=STEP_TIMEOUT)
        return steps
