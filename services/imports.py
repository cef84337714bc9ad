"""Import rows: what both the upload (api/routes/imports.py) and the import activities
(activities/imports.py) say about the sheet rows of one order."""

from __future__ import annotations

from db.models import ImportRow
from domain.problems import Problem


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
