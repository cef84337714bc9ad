"""Books against shelves: the reconciliation step of the nightly ReconcileWorkflow."""

from __future__ import annotations

from sqlalchemy import text
from temporalio import activity

from activities.base import DbActivities
from db import reconcile
from domain.reconcile import Report, RunRequest


class ReconcileActivities(DbActivities):
    @activity.defn(name="reconcile.check")
    async def check(self, req: RunRequest) -> Report:
        """Read the books and say what is off. Reads only, so a retry is harmless; one
        repeatable-read transaction, so every check sees the same moment."""
        async with self.sessions() as s, s.begin():
            await s.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            return await reconcile.check(
                s, req.skus, invoice_grace_seconds=self.settings.reconcile_invoice_grace_seconds
            )
