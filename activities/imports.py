"""Imports: turn stored sheet rows into orders, a batch at a time, idempotently."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

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


class ImportActivities(DbActivities):
    @activity.defn(name="imports.process_batch")
    async def process_batch(self, inp: ImportInput) -> ImportProgress:
        """Create the next orders of an import; a retried batch finds them already done."""
        client = activity.client()
        async with self.sessions() as s:
            imp = await s.get_one(Import, inp.import_id)
            s.expunge(imp)
            refs = (
                await s.scalars(
                    select(ImportRow.external_ref)
                    .where(ImportRow.import_id == imp.id, ImportRow.status == "pending")
                    .group_by(ImportRow.external_ref)
                    .order_by(func.min(ImportRow.row_no))
                    .limit(inp.batch_size)
                )
            ).all()
            by_ref: dict[str, list[ImportRow]] = {}
            batch_rows = await s.scalars(
                select(ImportRow)
                .where(ImportRow.import_id == imp.id, ImportRow.external_ref.in_(refs))
                .order_by(ImportRow.row_no)
            )
            for r in batch_rows.all():
                by_ref.setdefault(r.external_ref, []).append(r)
            s.expunge_all()
        # The orders of a batch are created side by side (each in its own session and
        # transaction, as POST /orders would), a bounded number at a time: one by one, an
        # import waited on each order's round trips to PostgreSQL and Temporal in turn.
        gate = asyncio.Semaphore(inp.parallel)

        async def one(ref: str) -> None:
            async with gate:
                await self._one(client, imp, by_ref[ref])
                activity.heartbeat(ref)

        await asyncio.gather(*(one(ref) for ref in refs))
        async with self.sessions() as s:
            remaining = await s.scalar(
                select(func.count(func.distinct(ImportRow.external_ref))).where(
                    ImportRow.import_id == imp.id, ImportRow.status == "pending"
                )
            )
        return ImportProgress(remaining=int(remaining or 0))

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
        (group,) = group_orders(Sheet(imp.header, [r.cells for r in rows]), imp.channel, row_nos)
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
