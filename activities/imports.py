"""Imports: turn stored sheet rows into orders, a batch at a time, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import func, select, update
from temporalio import activity

from activities.base import DbActivities
from api.errors import ProblemsError
from api.intake import create_order
from db.models import Import, ImportRow
from domain.payloads import ImportInput, ImportProgress, OrderIn, Problem
from domain.sheets import Sheet, group_orders


def row_messages(problems: list[Problem], row_nos: list[int]) -> dict[int, str]:
    """Each problem on the row it belongs to: line i is the group's i-th row; order-level
    problems go on the first row."""
    out: dict[int, list[str]] = {}
    for p in problems:
        loc = [x for x in p.loc if x != "body"]
        row = (
            row_nos[loc[1]]
            if len(loc) > 1
            and loc[0] == "lines"
            and isinstance(loc[1], int)
            and loc[1] < len(row_nos)
            else row_nos[0]
        )
        out.setdefault(row, []).append(p.message)
    return {row: "; ".join(msgs) for row, msgs in out.items()}


def sheet_column(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """The sheet column an OrderIn field comes from: lines.0.quantity is `quantity`,
    ship_to.city is `ship_to_city`."""
    parts = [str(x) for x in loc if x != "body"]
    if parts[:1] == ["lines"] and len(parts) >= 3:
        return parts[2]
    if parts[:1] == ["ship_to"] and len(parts) >= 2:
        return "ship_to_" + parts[1]
    return parts[0] if parts else "row"


def reject_group(rows: list[ImportRow], messages: dict[int, str]) -> None:
    """Nothing half-imports: one bad row refuses its whole order, and says which row."""
    bad = sorted(messages)
    for row in rows:
        row.status = "rejected"
        row.message = messages.get(row.row_no) or (
            f"not imported: row {bad[0]} of the same order has errors"
        )


class ImportActivities(DbActivities):
    @activity.defn(name="imports.process_batch")
    async def process_batch(self, inp: ImportInput) -> ImportProgress:
        """Create the next orders of an import; a retried batch finds them already done."""
        client = activity.client()
        async with self.sessions() as s:
            imp = await s.get_one(Import, inp.import_id)
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
            for ref in refs:
                await self._one(s, client, imp, by_ref[ref])
                await s.commit()
                activity.heartbeat(ref)
            remaining = await s.scalar(
                select(func.count(func.distinct(ImportRow.external_ref))).where(
                    ImportRow.import_id == imp.id, ImportRow.status == "pending"
                )
            )
        return ImportProgress(remaining=int(remaining or 0))

    async def _one(self, s, client, imp: Import, rows: list[ImportRow]) -> None:  # type: ignore[no-untyped-def]
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
