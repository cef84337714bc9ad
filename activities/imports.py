"""Imports: turn stored sheet rows into orders, a batch at a time, idempotently."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, select, update
from temporalio import activity
from temporalio.client import Client

from activities.base import DbActivities
from db.models import Import, ImportRow
from domain.imports import ImportInput, ImportProgress
from domain.orders import OrderIn
from domain.problems import Problem, ProblemsError
from domain.sheets import Sheet, group_orders
from services.imports import reject_group, row_messages, sheet_column
from services.intake import create_order

# How long one process_batch call creates orders before it returns to the workflow: well
# inside IMPORT_BATCH_TIMEOUT (10 minutes, workflows/policies.py), so a slow order never
# times the call out; the workflow calls again while rows are pending.
RUN_BUDGET = timedelta(minutes=4)


class ImportActivities(DbActivities):
    @activity.defn(name="imports.process_batch")
    async def process_batch(self, inp: ImportInput) -> ImportProgress:
        """Create the import's pending orders, batch after batch, for up to
        `RUN_BUDGET` (then the workflow calls again); a retry finds the done ones done.

        The batches run inside one activity call: one call per batch put a workflow task
        between batches, and that task queued behind the first tasks of the very orders
        the batch had just started (hundreds of them), so an import spent most of its time
        waiting for its own turn (issue 18)."""
        client = activity.client()
        deadline = time.monotonic() + RUN_BUDGET.total_seconds()
        async with self.sessions() as s:
            imp = await s.get_one(Import, inp.import_id)
            s.expunge(imp)
        while time.monotonic() < deadline:
            by_ref = await self._next_batch(imp, inp.batch_size)
            if not by_ref:
                break
            # The orders of a batch are created side by side (each in its own session and
            # transaction, as POST /orders would), a bounded number at a time.
            gate = asyncio.Semaphore(inp.parallel)

            async def one(rows: list[ImportRow], gate: asyncio.Semaphore = gate) -> None:
                async with gate:
                    await self._one(client, imp, rows)
                    activity.heartbeat(rows[0].external_ref)

            await asyncio.gather(*(one(rows) for rows in by_ref.values()))
        async with self.sessions() as s:
            remaining = await s.scalar(
                select(func.count(func.distinct(ImportRow.external_ref))).where(
                    ImportRow.import_id == imp.id, ImportRow.status == "pending"
                )
            )
        return ImportProgress(remaining=int(remaining or 0))

    async def _next_batch(self, imp: Import, size: int) -> dict[str, list[ImportRow]]:
        """The rows of the next `size` pending orders, by reference, in sheet order."""
        async with self.sessions() as s:
            refs = (
                await s.scalars(
                    select(ImportRow.external_ref)
                    .where(ImportRow.import_id == imp.id, ImportRow.status == "pending")
                    .group_by(ImportRow.external_ref)
                    .order_by(func.min(ImportRow.row_no))
                    .limit(size)
                )
            ).all()
            by_ref: dict[str, list[ImportRow]] = {ref: [] for ref in refs}
            batch_rows = await s.scalars(
                select(ImportRow)
                .where(ImportRow.import_id == imp.id, ImportRow.external_ref.in_(refs))
                .order_by(ImportRow.row_no)
            )
            for r in batch_rows.all():
                by_ref[r.external_ref].append(r)
            s.expunge_all()
        return by_ref

    async def _one(self, client: Client, imp: Import, rows: list[ImportRow]) -> None:
        """Create one order from its rows and record the outcome on them, committed at once
        (a retried batch then finds the order's rows done, not pending)."""
        await self._create(client, imp, rows)
        async with self.tx() as s:
            await s.execute(
                update(ImportRow),
                [
                    {
                        "import_id": imp.id,
                        "row_no": r.row_no,
                        "status": r.status,
                        "message": r.message,
                        "order_id": r.order_id,
                    }
                    for r in rows
                ],
            )

    async def _create(self, client: Client, imp: Import, rows: list[ImportRow]) -> None:
        """The order of these rows, created (or found); the outcome is set on the rows."""
        row_nos = [r.row_no for r in rows]
        # A pending row's message is a cell the upload could not read as its column.
        problems = {r.row_no: [r.message] for r in rows if r.message}
        sheet = Sheet(imp.header, [r.cells for r in rows], row_nos, problems)
        (group,) = group_orders(sheet, imp.channel, row_nos)
        if group.doc is None:
            reject_group(rows, group.errors)
            return
        try:
            order = OrderIn.model_validate(group.doc)
            answer, created = await create_order(
                self.sessions,
                client,
                self.settings,
                order,
                idempotency_key=None,
                actor=imp.created_by,
            )
        except ValidationError as err:
            reject_group(
                rows,
                row_messages(
                    [
                        Problem(
                            loc=list(e["loc"]),
                            code=e["type"],
                            message=f"{sheet_column(e['loc'])}: {e['msg']}",
                        )
                        for e in err.errors()
                    ],
                    row_nos,
                ),
            )
            return
        except ProblemsError as err:
            reject_group(rows, row_messages(err.problems, row_nos))
            return
        for row in rows:
            row.order_id = answer["id"]
            row.status = "created" if created else "duplicate"
            row.message = (
                ""
                if created
                else (f"already imported as {answer['id']} (same channel and external reference)")
            )

    @activity.defn(name="imports.finish")
    async def finish(self, inp: ImportInput) -> None:
        async with self.tx() as s:
            await s.execute(
                update(Import)
                .where(Import.id == inp.import_id, Import.status == "running")
                .values(status="done", finished_at=datetime.now(UTC))
            )
