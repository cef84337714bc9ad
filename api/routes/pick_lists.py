"""The warehouse floor (manual mode, docs/warehouse.md): the open pick lists in priority
order, one list (JSON or a printable sheet), its confirmation, and an order's packages."""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Response
from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from api.deps import CurrentUser, SessionDep, StateDep
from api.errors import ProblemsError, responses
from api.routes.orders import OrderId, _order_or_404, _update, _update_error
from db.models import Order, PickBatch, PickList
from domain.base import Model
from domain.fulfilment import PackagesGiven, PackagesIn, PickConfirmation, PickConfirmIn
from domain.fulfilment import PickedLine as PickedLineIn
from domain.orders import OrderState
from domain.problems import Problem
from domain.types import DbId
from services.temporal import workflow_id
from workflows.order import OrderWorkflow

router = APIRouter(tags=["warehouse"], responses=responses(404, 409))

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Urgent lists first, then the earliest requested delivery date, then the oldest.
_RANK = {"urgent": 0, "normal": 1}


class PickLineOut(Model):
    sku: str
    bin_location: str | None
    sequence: int
    quantity: int
    order_id: str
    picked: int | None = None


class PickListOut(Model):
    """A pick list as the floor walks it: `order_id` for one order, `orders` for a wave."""

    id: int
    kind: Literal["single", "wave"]
    order_id: str | None = None
    orders: list[str] | None = None
    status: str
    priority: str
    requested_delivery_date: date | None = None
    lines: list[PickLineOut]
    distance_m: Decimal | None
    # How far the same lines are walked in bin-code order, and how much the walk saves.
    by_code_m: Decimal | None
    created_at: datetime


async def _members(session: AsyncSession, batch_ids: list[int]) -> dict[int, list[Order]]:
    rows = (
        await session.execute(
            select(PickList.batch_id, Order)
            .join(Order, Order.id == PickList.order_id)
            .where(PickList.batch_id.in_(batch_ids), PickList.status != "cancelled")
            .order_by(PickList.id)
        )
    ).all()
    out: dict[int, list[Order]] = defaultdict(list)
    for batch_id, order in rows:
        if batch_id is not None:
            out[batch_id].append(order)
    return out


def _out(batch: PickBatch, orders: list[Order], picked: dict[tuple[str, str], int]) -> PickListOut:
    ids = [o.id for o in orders]
    priority = "urgent" if any(o.priority == "urgent" for o in orders) else "normal"
    dates = [o.requested_delivery_date for o in orders if o.requested_delivery_date]
    return PickListOut(
        id=batch.id,
        kind=batch.kind,  # type: ignore[arg-type]  # the CHECK constraint's values
        order_id=ids[0] if batch.kind == "single" and ids else None,
        orders=ids if batch.kind == "wave" else None,
        status=batch.status,
        priority=priority,
        requested_delivery_date=min(dates) if dates else None,
        lines=[
            PickLineOut(
                sku=ln["sku"],
                bin_location=ln.get("bin_location"),
                sequence=int(ln.get("sequence", n)),
                quantity=int(ln["quantity"]),
                order_id=ln["order_id"],
                picked=picked.get((ln["order_id"], ln["sku"])),
            )
            for n, ln in enumerate(batch.lines, start=1)
        ],
        distance_m=batch.distance_m,
        by_code_m=batch.by_code_m,
        created_at=batch.created_at,
    )


def _queue_key(p: PickListOut) -> tuple[Any, ...]:
    return (_RANK.get(p.priority, 1), p.requested_delivery_date or date.max, p.created_at, p.id)


async def _one(session: AsyncSession, batch_id: int) -> PickListOut:
    batch = await session.get(PickBatch, batch_id)
    if batch is None:
        raise HTTPException(404, f"no pick list {batch_id}")
    members = await _members(session, [batch_id])
    picked: dict[tuple[str, str], int] = {}
    for pl in await session.scalars(select(PickList).where(PickList.batch_id == batch_id)):
        for ln in pl.lines:
            if "picked" in ln:
                picked[(pl.order_id, ln["sku"])] = int(ln["picked"])
    return _out(batch, members.get(batch_id, []), picked)


@router.get("/pick-lists")
async def list_pick_lists(
    session: SessionDep,
    _: CurrentUser,
    status: Literal["forming", "open", "confirmed", "cancelled"] = "open",
) -> list[PickListOut]:
    """The floor's queue: urgent first, then the earliest requested date, then the oldest."""
    batches = (
        await session.scalars(
            select(PickBatch).where(PickBatch.status == status).order_by(PickBatch.id).limit(500)
        )
    ).all()
    members = await _members(session, [b.id for b in batches])
    lists = [_out(b, members.get(b.id, []), {}) for b in batches]
    return sorted(lists, key=_queue_key)


@router.get(
    "/pick-lists/{batch_id}.xlsx",
    response_class=Response,
    responses={200: {"content": {_XLSX: {}}}},
)
async def pick_list_sheet(batch_id: DbId, session: SessionDep, _: CurrentUser) -> Response:
    """The pick list as a printable sheet, in walking order."""
    p = await _one(session, batch_id)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = f"pick list {p.id}"
    who = p.order_id or ", ".join(p.orders or [])
    ws.append([f"Pick list {p.id} ({p.kind}, {p.priority})", who])
    ws.append(["walk", f"{p.distance_m} m", "by bin code", f"{p.by_code_m} m"])
    ws.append([])
    ws.append(["#", "bin", "sku", "quantity", "order", "picked"])
    for cell in ws[4]:
        cell.font = Font(bold=True)
    for ln in p.lines:
        ws.append([ln.sequence, ln.bin_location, ln.sku, ln.quantity, ln.order_id, None])
    ws.page_setup.orientation = "portrait"
    ws.print_title_rows = "4:4"
    buf = io.BytesIO()
    wb.save(buf)
    return Response(
        buf.getvalue(),
        media_type=_XLSX,
        headers={"Content-Disposition": f'attachment; filename="pick-list-{p.id}.xlsx"'},
    )


@router.get("/pick-lists/{batch_id}")
async def get_pick_list(batch_id: DbId, session: SessionDep, _: CurrentUser) -> PickListOut:
    return await _one(session, batch_id)


def _split(p: PickListOut, body: PickConfirmIn, waiting: set[str]) -> dict[str, list[PickedLineIn]]:
    """Each waiting order's part of the confirmation; every line of those orders exactly
    once, each `picked` between 0 and the line's quantity (a 422 naming the line otherwise).
    Lines of orders whose part was taken before (a confirm sent again) are checked, then
    ignored."""
    by_sku: dict[str, list[PickLineOut]] = defaultdict(list)
    for ln in p.lines:
        by_sku[ln.sku].append(ln)
    problems: list[Problem] = []
    parts: dict[str, list[PickedLineIn]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for i, got in enumerate(body.lines):
        loc: list[str | int] = ["body", "lines", i]
        candidates = [ln for ln in by_sku.get(got.sku, []) if got.order_id in (None, ln.order_id)]
        if not candidates:
            problems.append(
                Problem(
                    loc=[*loc, "sku"],
                    code="not_on_list",
                    message=f"{got.sku} is not on pick list {p.id}"
                    + (f" for order {got.order_id}" if got.order_id else ""),
                )
            )
            continue
        if len(candidates) > 1:
            problems.append(
                Problem(
                    loc=[*loc, "order_id"],
                    code="ambiguous",
                    message=f"{got.sku} is on this wave for orders "
                    f"{', '.join(c.order_id for c in candidates)}: say which with order_id",
                )
            )
            continue
        line = candidates[0]
        if (line.order_id, line.sku) in seen:
            problems.append(
                Problem(loc=[*loc, "sku"], code="duplicate", message=f"{got.sku} given twice")
            )
            continue
        seen.add((line.order_id, line.sku))
        if got.picked > line.quantity:
            problems.append(
                Problem(
                    loc=[*loc, "picked"],
                    code="too_many",
                    message=f"picked must be between 0 and {line.quantity} (the quantity on "
                    f"the list) for {got.sku}",
                )
            )
            continue
        if line.order_id in waiting:
            parts[line.order_id].append(PickedLineIn(sku=line.sku, picked=got.picked))
    for ln in p.lines:
        if ln.order_id in waiting and (ln.order_id, ln.sku) not in seen and not problems:
            problems.append(
                Problem(
                    loc=["body", "lines"],
                    code="missing",
                    message=f"every line must be confirmed: {ln.sku} (order {ln.order_id}) is "
                    "missing",
                )
            )
    if problems:
        raise ProblemsError(problems)
    return parts


async def _hand_over(state: StateDep, order_id: str, c: PickConfirmation) -> bool:
    """Give one order its part: the `confirm_pick` Update (True, recorded), or, when the
    order is between two steps (NotReady after the API's short retries), the durable
    `confirm_pick_later` signal (False: the order takes it as soon as it waits)."""
    try:
        await _update(state, order_id, OrderWorkflow.confirm_pick, c)
        return True
    except WorkflowUpdateFailedError as err:
        if getattr(err.cause, "type", None) != "NotReady":
            raise
    handle = state.client.get_workflow_handle(workflow_id(order_id))
    await handle.signal(OrderWorkflow.confirm_pick_later, c)
    return False


@router.post(
    "/pick-lists/{batch_id}/confirm",
    responses={202: {"description": "taken durably; the order records it in a moment"}},
)
async def confirm_pick_list(
    batch_id: DbId,
    body: PickConfirmIn,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    response: Response,
) -> PickListOut:
    """What the floor picked, per line. Confirmed **per order**: each order of the list
    gets its part (a short line gives back its shortfall; the order then ships or waits by
    its usual rules). Orders that refuse are named in a 409; the others keep their part,
    and the same confirmation sent again only goes to the orders still waiting. 202 when
    an order was between two steps: its part is kept durably and taken in a moment."""
    p = await _one(session, batch_id)
    if p.status != "open":
        raise HTTPException(409, f"pick list {batch_id} is {p.status}, not open")
    waiting = set(
        await session.scalars(
            select(PickList.order_id).where(
                PickList.batch_id == batch_id, PickList.status == "open"
            )
        )
    )
    parts = _split(p, body, waiting)
    await session.rollback()  # no transaction held while the orders record their picks
    taken: list[str] = []
    later: list[str] = []
    refused: list[str] = []
    for order_id, lines in sorted(parts.items()):
        c = PickConfirmation(batch_id=batch_id, lines=lines, by=user.name)
        try:
            (taken if await _hand_over(state, order_id, c) else later).append(order_id)
        except (WorkflowUpdateFailedError, RPCError) as err:
            if p.kind == "single":
                raise _update_error(err, order_id) from err
            reason = getattr(err.cause, "message", None) if hasattr(err, "cause") else None
            refused.append(f"{order_id} ({reason or err})")
    if refused:
        done = ", ".join(taken + later) or "none"
        raise HTTPException(
            409,
            f"pick list {batch_id} is confirmed per order: taken by {done}; refused by "
            + "; ".join(refused)
            + ". Sending the same confirmation again retries only the orders still waiting.",
        )
    if later:
        response.status_code = 202
    return await _one(session, batch_id)


@router.post("/orders/{order_id}/packages")
async def give_packages(
    order_id: OrderId,
    body: PackagesIn,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> OrderState:
    """The packages the picked goods went into: the carrier booking takes them."""
    await _order_or_404(session, order_id, user)
    await session.rollback()
    try:
        return await _update(
            state,
            order_id,
            OrderWorkflow.give_packages,
            PackagesGiven(packages=body.packages, by=user.name),
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise _update_error(err, order_id) from err
