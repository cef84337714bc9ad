"""Amend from the order page: quantities, ship-to and requested date, through the function
of PATCH /orders/{id} (the workflow's `amend` Update). Every problem comes back at once as a
sentence on the order page, with what the person typed kept in the form."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.errors import ProblemsError
from api.routes import orders
from api.ui import pages
from api.ui.web import ConsoleRoute, may, render, templates
from domain.orders import AmendIn
from domain.problems import Problem
from domain.status import FINAL_STATUSES, LINES_AMENDABLE, SHIPPED_OR_LATER

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

AMEND_PATH = "/ui/orders/{order_id}/amend"
CLOSED = {s.value for s in SHIPPED_OR_LATER | FINAL_STATUSES}
ADDRESS = ("line1", "city", "postal_code", "country")


def amendable(user: Caller | None, order: Any) -> dict[str, bool] | None:
    """What the order page's amend form offers this user: None (no form: not their role,
    or the order has shipped or ended), else whether its lines can still change (only
    before stock is reserved; ship-to and date until it ships). The Update decides."""
    if user is None or order.status in CLOSED or not may(user, "POST", AMEND_PATH):
        return None
    return {"lines": order.status in {s.value for s in LINES_AMENDABLE}}


templates.env.globals["amendable"] = amendable


def _change(order: orders.OrderOut, form: FormData) -> tuple[dict[str, Any], list[str], list[str]]:
    """The PATCH body for what differs from the order (quantity 0 removes a line), the
    problems of the form itself, and the SKU of each line sent (to name them in problems)."""
    change: dict[str, Any] = {}
    problems: list[str] = []
    sent: list[str] = []
    if any(f"qty_{ln.line_no}" in form for ln in order.lines):
        lines, moved = [], False
        for ln in order.lines:
            raw = str(form.get(f"qty_{ln.line_no}", ln.quantity)).strip()
            try:
                qty = int(raw)
            except ValueError:
                problems.append(f"line {ln.line_no} ({ln.sku}): {raw!r} is not a whole number")
                continue
            moved |= qty != ln.quantity
            if qty == 0:
                continue
            # A price set by hand stays; every other line is priced again by the rules.
            price = ln.unit_price if ln.price_rule.startswith("override(") else None
            lines.append({"sku": ln.sku, "quantity": qty, "unit_price": price})
            sent.append(ln.sku)
        if moved:
            change["lines"] = lines
    typed = {k: str(form.get(k, "")).strip() for k in ADDRESS}
    if any(typed.values()) and typed != {k: str(order.ship_to.get(k, "")) for k in ADDRESS}:
        change["ship_to"] = typed
    day = str(form.get("requested_delivery_date", "")).strip()
    current = order.requested_delivery_date.isoformat() if order.requested_delivery_date else ""
    if "requested_delivery_date" in form and day != current:
        if day:
            change["requested_delivery_date"] = day
        else:
            problems.append("requested date: it can be changed, not removed")
    if change:
        change["comment"] = str(form.get("comment", ""))
    return change, problems, sent


def _where(loc: list[str | int], sent: list[str]) -> str:
    """A problem's place in words: `line 2 (SKU-B) quantity`, `ship_to.city`."""
    parts = [p for p in loc if p != "body"]
    if len(parts) >= 2 and parts[0] == "lines" and isinstance(parts[1], int):
        i = parts[1]
        sku = f" ({sent[i]})" if i < len(sent) else ""
        return " ".join([f"line {i + 1}{sku}", *map(str, parts[2:])])
    return ".".join(map(str, parts)) or "the change"


def _sentences(problems: list[Problem], sent: list[str]) -> list[str]:
    return [f"{_where(p.loc, sent)}: {p.message}" for p in problems]


async def _page_with_problems(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: Caller,
    order_id: str,
    status_code: int,
    problems: list[str],
    form: FormData,
) -> Response:
    session.expunge_all()  # read the order as the workflow left it
    context = await pages._order_context(state, session, user, order_id)
    return render(
        request,
        "order.html",
        user,
        status_code=status_code,
        amend_problems=problems,
        amend_typed={k: str(v) for k, v in form.items() if k != "csrf"},
        **context,
    )


@router.post("/orders/{order_id}/amend")
async def amend(
    request: Request,
    order_id: orders.OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """PATCH /orders/{id}'s own function with what the form changed: 422 lists every
    problem (the form's and the order's), 409 says why the order cannot take it."""
    order = await orders.read_order(order_id, session, user)
    form = await request.form()
    change, problems, sent = _change(order, form)
    if not problems and not change:
        problems = ["nothing changed: edit a quantity, the ship-to address or the date first"]
    body: AmendIn | None = None
    if not problems:
        try:
            body = AmendIn.model_validate(change)
        except ValidationError as err:
            problems = [f"{_where(list(e['loc']), sent)}: {e['msg']}" for e in err.errors()]
    if body is None:
        return await _page_with_problems(
            request, state, session, user, order_id, 422, problems, form
        )
    try:
        await orders.amend(order_id, body, state, session, user)
    except ProblemsError as err:
        return await _page_with_problems(
            request,
            state,
            session,
            user,
            order_id,
            err.status_code,
            _sentences(err.problems, sent),
            form,
        )
    except HTTPException as err:
        if err.status_code == 404:
            raise
        return await _page_with_problems(
            request, state, session, user, order_id, err.status_code, [str(err.detail)], form
        )
    return RedirectResponse(f"/ui/orders/{order_id}?done=amend", status_code=303)
