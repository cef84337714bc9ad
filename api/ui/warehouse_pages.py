"""Console pages for the warehouse floor (manual mode, docs/warehouse.md): the open pick
lists in the floor's order (urgent first) with a confirm form each, the orders waiting for
their packages with a packages form each, and the printable sheet. Each action is the
function of the API route it mirrors (POST /pick-lists/{id}/confirm,
POST /orders/{id}/packages, GET /pick-lists/{id}.xlsx)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import case, select
from starlette.datastructures import FormData

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.errors import ProblemsError
from api.routes import pick_lists
from api.routes.orders import OrderId
from api.ui.web import PAGE_SIZE, ConsoleRoute, may, render
from db.models import Customer, Order, PickList
from domain.fulfilment import PackagesIn, PickConfirmIn
from domain.types import DbId

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10_000)]
PARCEL_FIELDS = ("weight_kg", "length_cm", "width_cm", "height_cm")
MAX_ROWS = 100  # PackagesIn takes at most 100 packages
DONE = {
    "confirmed": "Pick list #{ref} confirmed: its orders go on to packing (a short line gives "
    "back what was not picked).",
    "confirmed-later": "Pick list #{ref} confirmed: an order was between two steps and takes "
    "its part in a moment.",
    "packed": "Order {ref}: packages given. It goes to the carrier booking.",
}


@dataclass
class FloorState:
    """What the page shows again after a refused form: its messages and what was typed."""

    list_problems: dict[int, list[str]] = field(default_factory=dict)
    list_typed: dict[int, dict[str, str]] = field(default_factory=dict)
    pack_problems: dict[str, list[str]] = field(default_factory=dict)
    pack_typed: dict[str, dict[str, str]] = field(default_factory=dict)
    pack_rows: dict[str, int] = field(default_factory=dict)


def _saving(p: pick_lists.PickListOut) -> dict[str, Decimal] | None:
    """The walk against the same lines walked in bin-code order: metres and percent saved."""
    if p.distance_m is None or p.by_code_m is None:
        return None
    saved = p.by_code_m - p.distance_m
    pct = saved / p.by_code_m * 100 if p.by_code_m > 0 else Decimal(0)
    return {"metres": saved, "percent": pct.quantize(Decimal("0.1"))}


async def _waiting_for_packages(session: SessionDep) -> list[Any]:
    """Orders picked on the floor and waiting for their packages: urgent first, then the
    earliest picked."""
    q = (
        select(Order, PickList, Customer.name)
        .join(PickList, PickList.order_id == Order.id)
        .join(Customer, Customer.code == Order.customer_code)
        .where(
            Order.status == "packed",
            PickList.batch_id.is_not(None),
            PickList.status.in_(("picked", "short")),
        )
        .order_by(
            case((Order.priority == "urgent", 0), else_=1),
            PickList.picked_at.nulls_last(),
            Order.id,
        )
        .limit(PAGE_SIZE)
    )
    return list((await session.execute(q)).all())


async def _floor_page(
    request: Request,
    session: SessionDep,
    user: Caller,
    page: int = 1,
    status_code: int = 200,
    again: FloorState | None = None,
    done: str | None = None,
    ref: str | None = None,
) -> Response:
    await session.rollback()  # read what the workflows wrote, not this request's snapshot
    queue = await pick_lists.list_pick_lists(session, user, "open")
    shown = queue[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    again = again or FloorState()
    message = DONE.get(done or "")
    waiting = await _waiting_for_packages(session)
    # A refused form whose list or order is not on this page any more: say why at the top.
    elsewhere = [
        *(m for k, ms in again.list_problems.items() if k not in {p.id for p in shown} for m in ms),
        *(
            m
            for k, ms in again.pack_problems.items()
            if k not in {o.id for o, _, _ in waiting}
            for m in ms
        ),
    ]
    return render(
        request,
        "pick_lists.html",
        user,
        status_code=status_code,
        lists=[{"p": p, "saving": _saving(p)} for p in shown],
        total=len(queue),
        more=len(queue) > page * PAGE_SIZE,
        page=page,
        waiting=waiting,
        elsewhere=elsewhere,
        again=again,
        fields=PARCEL_FIELDS,
        done=message.format(ref=ref) if message and ref else None,
        can_confirm=may(user, "POST", "/ui/pick-lists/{batch_id}/confirm"),
        can_pack=may(user, "POST", "/ui/orders/{order_id}/packages"),
    )


@router.get("/pick-lists")
async def floor(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    page: PageNo = 1,
    done: str | None = None,
    ref: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _floor_page(request, session, user, page, done=done, ref=ref)


@router.get("/pick-lists/{batch_id}.xlsx")
async def sheet(batch_id: DbId, session: SessionDep, user: CurrentUser) -> Response:
    """GET /pick-lists/{id}.xlsx's own function: the sheet to print and walk with."""
    return await pick_lists.pick_list_sheet(batch_id, session, user)


def _line_label(p: pick_lists.PickListOut, i: int) -> str:
    ln = p.lines[i]
    where = f" at {ln.bin_location}" if ln.bin_location else ""
    whose = f", order {ln.order_id}" if p.kind == "wave" else ""
    return f"line {ln.sequence} ({ln.sku}{where}{whose})"


def _pick_problem_label(p: pick_lists.PickListOut, loc: list[Any]) -> str:
    """`body.lines.2.picked` as the line a person sees on the sheet."""
    parts = [x for x in loc if x != "body"]
    if len(parts) >= 2 and parts[0] == "lines" and isinstance(parts[1], int):
        if 0 <= parts[1] < len(p.lines):
            return _line_label(p, parts[1])
    return ".".join(map(str, parts)) or "pick list"


@router.post("/pick-lists/{batch_id}/confirm")
async def confirm(
    request: Request,
    batch_id: DbId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """POST /pick-lists/{id}/confirm's own function with the quantities typed per line
    (`picked_<n>`, in the list's order); every problem named by its line, 409 as a sentence."""
    p = await pick_lists.get_pick_list(batch_id, session, user)
    form = await request.form()
    typed = {f"picked_{i}": str(form.get(f"picked_{i}") or "").strip() for i in range(len(p.lines))}
    problems: list[str] = []
    lines: list[dict[str, Any]] = []
    for i, ln in enumerate(p.lines):
        raw = typed[f"picked_{i}"]
        if not (raw.isascii() and raw.isdigit()):
            what = "is missing" if not raw else f"must be a whole number of units, not '{raw}'"
            problems.append(f"{_line_label(p, i)}: picked {what}")
            continue
        line: dict[str, Any] = {"sku": ln.sku, "picked": int(raw)}
        if p.kind == "wave":
            line["order_id"] = ln.order_id
        lines.append(line)
    answer = Response()  # 202: an order was between two steps and takes its part in a moment
    if not problems:
        try:
            body = PickConfirmIn.model_validate({"lines": lines})
            await pick_lists.confirm_pick_list(batch_id, body, state, session, user, answer)
        except ValidationError as err:
            problems = [
                f"{_pick_problem_label(p, list(e['loc']))}: {e['msg']}" for e in err.errors()
            ]
        except ProblemsError as err:
            problems = [f"{_pick_problem_label(p, pr.loc)}: {pr.message}" for pr in err.problems]
        except HTTPException as err:
            if err.status_code == 404:
                raise
            return await _refused_list(
                request, session, user, batch_id, err.status_code, [str(err.detail)], typed
            )
    if problems:
        return await _refused_list(request, session, user, batch_id, 422, problems, typed)
    done = "confirmed-later" if answer.status_code == 202 else "confirmed"
    return RedirectResponse(f"/ui/pick-lists?done={done}&ref={batch_id}", status_code=303)


async def _refused_list(
    request: Request,
    session: SessionDep,
    user: Caller,
    batch_id: int,
    status_code: int,
    problems: list[str],
    typed: dict[str, str],
) -> Response:
    again = FloorState(list_problems={batch_id: problems}, list_typed={batch_id: typed})
    return await _floor_page(request, session, user, status_code=status_code, again=again)


def _parcels(form: FormData) -> tuple[list[dict[str, str]], int, list[str], dict[str, str]]:
    """The package rows typed (`weight_kg_1`, `length_cm_1`, ...): the filled ones, how many
    rows the form had, the rows half filled, and what was typed (shown again if refused)."""
    try:
        rows = max(1, min(MAX_ROWS, int(str(form.get("rows") or "1"))))
    except ValueError:
        rows = 1
    typed: dict[str, str] = {}
    parcels: list[dict[str, str]] = []
    problems: list[str] = []
    for n in range(1, rows + 1):
        row = {f: str(form.get(f"{f}_{n}") or "").strip() for f in PARCEL_FIELDS}
        typed.update({f"{f}_{n}": v for f, v in row.items()})
        if not any(row.values()):
            continue  # an empty row is left out
        missing = [f for f, v in row.items() if not v]
        if missing:
            problems.append(f"package {n}: {', '.join(missing)} missing")
            continue
        parcels.append(row)
    return parcels, rows, problems, typed


def _package_label(numbers: list[int], loc: list[Any]) -> str:
    """`body.packages.0.weight_kg` as "package 1 weight_kg" (the row as numbered on screen)."""
    parts = [x for x in loc if x != "body"]
    if len(parts) >= 2 and parts[0] == "packages" and isinstance(parts[1], int):
        n = numbers[parts[1]] if parts[1] < len(numbers) else parts[1] + 1
        return " ".join([f"package {n}", *map(str, parts[2:])])
    return ".".join(map(str, parts)) or "packages"


@router.post("/orders/{order_id}/packages")
async def packages(
    request: Request,
    order_id: OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """POST /orders/{id}/packages' own function with the rows typed; `action=add` only
    shows one more empty row (the page works without JavaScript)."""
    form = await request.form()
    parcels, rows, problems, typed = _parcels(form)
    if form.get("action") == "add":
        again = FloorState(
            pack_typed={order_id: typed}, pack_rows={order_id: min(rows + 1, MAX_ROWS)}
        )
        return await _floor_page(request, session, user, again=again)
    numbers = [n for n in range(1, rows + 1) if any(typed[f"{f}_{n}"] for f in PARCEL_FIELDS)]
    if not parcels and not problems:
        problems = ["give at least one package: its weight (kg) and three sides (cm)"]
    status_code = 422
    if not problems:
        try:
            body = PackagesIn.model_validate({"packages": parcels})
            await pick_lists.give_packages(order_id, body, state, session, user)
        except ValidationError as err:
            problems = [
                f"{_package_label(numbers, list(e['loc']))}: {e['msg']}" for e in err.errors()
            ]
        except ProblemsError as err:
            problems = [f"{_package_label(numbers, pr.loc)}: {pr.message}" for pr in err.problems]
        except HTTPException as err:
            if err.status_code == 404:
                raise
            status_code, problems = err.status_code, [str(err.detail)]
    if problems:
        again = FloorState(
            pack_problems={order_id: problems},
            pack_typed={order_id: typed},
            pack_rows={order_id: rows},
        )
        return await _floor_page(request, session, user, status_code=status_code, again=again)
    return RedirectResponse(f"/ui/pick-lists?done=packed&ref={order_id}", status_code=303)
