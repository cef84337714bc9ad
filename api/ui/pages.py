"""Console pages for approvers and sales: sign-in, the approvals inbox, the order page and
its decision and cancel forms. Each action calls the function its API route calls."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.routes import notices, orders
from api.routes.approvals import pending_for
from api.routes.customers import get_customer
from api.ui import session as cookie
from api.ui.web import (
    NAV,
    PAGE_SIZE,
    ConsoleRoute,
    console_session,
    may,
    render,
    set_cookie,
)
from db.models import Customer, Invoice, Order, Product, Receivable, Return, ReturnLineRow
from domain.status import FINAL_STATUSES, SHIPPED_OR_LATER, OrderStatus
from domain.types import Text2000
from services.temporal import temporal_ui_link

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

OrderId = orders.OrderId
PageNo = Annotated[int, Query(ge=1, le=10_000)]
DONE = {
    "approve": "Approved. The order moves on.",
    "reject": "Rejected. The order is stopped and its reservations released.",
    "cancel": "Cancelled. Everything already done for it has been undone.",
    "cancel-pending": "Cancel accepted: the order is busy in a step and stops at the next one.",
    "amend": "Amended. Changed lines were checked, priced and routed again.",
    "priority": "Priority set. It is kept whatever the rules say later, and on the timeline.",
    "return-approve": "Return {ref} approved: it waits for the goods to arrive.",
    "return-reject": "Return {ref} refused: nothing is credited.",
}


def _safe_next(target: str | None) -> str:
    """Only a path of this console: a login link must not send anyone elsewhere."""
    if not target or not target.startswith("/ui/") or target.startswith("/ui/login"):
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return "/ui"
    return target


@router.get("")
async def home(user: CurrentUser) -> Response:
    """The first page this user's role may open (approvers: their inbox)."""
    target = next((path for _, path in NAV if may(user, "GET", path)), "/ui/kpis")
    return RedirectResponse(target, status_code=303)


@router.get("/login")
async def login_form(
    request: Request, next: str | None = None, expired: bool = False, failed: bool = False
) -> Response:
    sess = console_session(request)
    fresh = sess is None or sess.signed_in
    if fresh:  # a new anonymous session, so the form has a CSRF token to carry
        sess = cookie.new_session()
        request.scope["orderflow.console"] = sess
    response = render(
        request,
        "login.html",
        None,
        status_code=401 if failed else 200,
        next=_safe_next(next),
        expired=expired,
        failed=failed,
    )
    if fresh:
        assert sess is not None
        settings = request.app.state.orderflow.settings
        set_cookie(
            response, request, cookie.dump(settings, sess), cookie.ANONYMOUS_LIFETIME_SECONDS
        )
    return response


@router.post("/login")
async def login(
    request: Request,
    state: StateDep,
    session: SessionDep,
    token: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/ui",
) -> Response:
    """Check the token with the API's own lookup; a new session id at every sign-in. (Every
    page checks it again, through the API's access rules: a revoked token ends the session.)"""
    token = token.strip()
    if await state.tokens.lookup(session, token) is None:
        return await login_form(request, next=next, failed=True)
    sess = cookie.new_session(token)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_cookie(response, request, cookie.dump(state.settings, sess), cookie.LIFETIME_SECONDS)
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(cookie.COOKIE, path="/ui")
    return response


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


async def pending_returns(session: SessionDep, user: Caller) -> list[dict[str, Any]]:
    """Returns waiting for the caller's role (admin: any), oldest first, with their lines."""
    q = (
        select(Return, Order.priority, Customer.name)
        .join(Order, Order.id == Return.order_id)
        .join(Customer, Customer.code == Order.customer_code)
        .where(Return.status == "awaiting_approval")
        .order_by(Return.created_at, Return.id)
        .limit(PAGE_SIZE)
    )
    if user.role != "admin":
        q = q.where(Return.awaiting_role == user.role)
    rows = (await session.execute(q)).all()
    lines: dict[str, list[ReturnLineRow]] = {}
    if rows:
        found = await session.scalars(
            select(ReturnLineRow)
            .where(ReturnLineRow.return_id.in_([r.id for r, _, _ in rows]))
            .order_by(ReturnLineRow.sku)
        )
        for ln in found:
            lines.setdefault(ln.return_id, []).append(ln)
    return [
        {"rma": r, "priority": prio, "customer_name": name, "lines": lines.get(r.id, [])}
        for r, prio, name in rows
    ]


@router.get("/approvals")
async def approvals(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    page: PageNo = 1,
    done: str | None = None,
    ref: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    message = DONE.get(done or "") if done in ("return-approve", "return-reject") else None
    return await approvals_page(
        request, state, session, user, page, done=message.format(ref=ref) if message else None
    )


async def approvals_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: Caller,
    page: int = 1,
    status_code: int = 200,
    problem: str | None = None,
    done: str | None = None,
) -> Response:
    """What waits for my role, oldest first, with how long until each SLA step; and the
    returns that wait for my role."""
    q = pending_for(user.role)
    total = await session.scalar(select(func.count()).select_from(q.subquery())) or 0
    page_q = (
        q.join(Customer, Customer.code == Order.customer_code)
        .add_columns(Customer.name)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    )
    rows = (await session.execute(page_q)).all()
    now = datetime.now(UTC)
    s = state.settings
    items = []
    for a, o, customer_name in rows:
        steps = [
            ("reminder", a.requested_at + timedelta(seconds=s.approval_reminder_seconds)),
            ("escalation", a.requested_at + timedelta(seconds=s.approval_escalation_seconds)),
            ("timeout", a.requested_at + timedelta(seconds=s.approval_timeout_seconds)),
        ]
        items.append(
            {
                "approval": a,
                "order": o,
                "customer_name": customer_name,
                "waited": (now - a.requested_at).total_seconds(),
                "steps": [(name, (at - now).total_seconds()) for name, at in steps],
                "next": next(
                    ((n, (at - now).total_seconds()) for n, at in steps if at > now), None
                ),
            }
        )
    return render(
        request,
        "approvals.html",
        user,
        status_code=status_code,
        items=items,
        total=total,
        page=page,
        pages=_pages(total),
        returns=await pending_returns(session, user),
        can_decide_return=may(user, "POST", "/ui/returns/{rma_id}/decision"),
        problem=problem,
        done=done,
    )


async def _order_context(
    state: StateDep, session: SessionDep, user: Caller, order_id: str
) -> dict[str, Any]:
    """Everything an approver reads before deciding, from the API's own loaders."""
    order = await orders.read_order(order_id, session, user)
    customer = await get_customer(order.customer_code, session, user)
    today = datetime.now(UTC).date()
    overdue, oldest_due = (
        await session.execute(
            select(
                func.coalesce(func.sum(Receivable.open_amount), 0), func.min(Receivable.due_date)
            ).where(
                Receivable.customer_code == order.customer_code,
                Receivable.open_amount > 0,
                Receivable.due_date < today,
            )
        )
    ).one()
    floors = dict(
        (
            await session.execute(
                select(Product.sku, Product.floor_price).where(
                    Product.sku.in_({ln.sku for ln in order.lines})
                )
            )
        ).all()
    )
    lines = []
    for ln in order.lines:
        floor = floors.get(ln.sku)
        off_list = (
            (ln.unit_price - ln.list_price) / ln.list_price * 100 if ln.list_price else Decimal(0)
        )
        lines.append(
            {
                "line": ln,
                "floor": floor,
                "off_list_pct": off_list,
                "over_floor": None if floor is None else ln.unit_price - floor,
            }
        )
    recent = (
        await session.scalars(
            select(Order)
            .where(Order.customer_code == order.customer_code, Order.id != order.id)
            .order_by(Order.created_at.desc())
            .limit(8)
        )
    ).all()
    payments = (
        await session.execute(
            select(Receivable, Invoice.order_id, Invoice.credited)
            .join(Invoice, Invoice.number == Receivable.invoice_number)
            .where(Receivable.customer_code == order.customer_code)
            .order_by(Receivable.due_date.desc())
            .limit(8)
        )
    ).all()
    pending = next((a for a in order.approvals if a.status == "pending"), None)
    open_order = order.status not in {st.value for st in SHIPPED_OR_LATER | FINAL_STATUSES}
    return {
        "order": order,
        "customer": customer,
        "overdue_amount": overdue,
        "overdue_days": (today - oldest_due).days if oldest_due else 0,
        "lines": lines,
        "recent": recent,
        "payments": payments,
        "today": today,
        "pending": pending,
        "can_decide": pending is not None
        and order.status == OrderStatus.AWAITING_APPROVAL.value
        and order.awaiting_role == user.role,
        "can_cancel": open_order and may(user, "POST", "/ui/orders/{order_id}/cancel"),
        "can_set_priority": order.status not in {st.value for st in FINAL_STATUSES}
        and may(user, "POST", "/ui/orders/{order_id}/priority"),
        "notices": await notices.order_notices(order.id, session, user),
        "may_pack": may(user, "POST", "/ui/orders/{order_id}/packages"),
        "temporal_url": temporal_ui_link(state.settings, order.id),
    }


async def _order_page(
    request: Request,
    state: StateDep,
    session: SessionDep,
    user: Caller,
    order_id: str,
    status_code: int = 200,
    problem: str | None = None,
    done: str | None = None,
) -> Response:
    session.expunge_all()  # read the order as the workflow left it
    context = await _order_context(state, session, user, order_id)
    return render(
        request,
        "order.html",
        user,
        status_code=status_code,
        problem=problem,
        done=DONE.get(done or ""),
        **context,
    )


@router.get("/orders/{order_id}")
async def order_page(
    request: Request,
    order_id: OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    done: str | None = None,
) -> Response:
    return await _order_page(request, state, session, user, order_id, done=done)


@router.post("/orders/{order_id}/decision")
async def decide(
    request: Request,
    order_id: OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    decision: Annotated[Literal["approve", "reject"], Form()],
    comment: Annotated[Text2000, Form()] = "",
) -> Response:
    """The same Update as POST /orders/{id}/decision; 403 and 409 come back as sentences."""
    body = orders.DecisionIn(decision=decision, comment=comment)
    try:
        await orders.decide(order_id, body, state, session, user)
    except HTTPException as err:
        if err.status_code == 404:
            raise
        return await _order_page(
            request, state, session, user, order_id, err.status_code, str(err.detail)
        )
    return RedirectResponse(f"/ui/orders/{order_id}?done={decision}", status_code=303)


@router.post("/orders/{order_id}/cancel")
async def cancel(
    request: Request,
    order_id: OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    reason: Annotated[Text2000, Form()] = "",
) -> Response:
    """The same cancel as POST /orders/{id}/cancel: done, or accepted and pending (202)."""
    answer = Response()
    try:
        await orders.cancel(order_id, orders.CancelIn(reason=reason), state, session, user, answer)
    except HTTPException as err:
        if err.status_code == 404:
            raise
        return await _order_page(
            request, state, session, user, order_id, err.status_code, str(err.detail)
        )
    done = "cancel-pending" if answer.status_code == 202 else "cancel"
    return RedirectResponse(f"/ui/orders/{order_id}?done={done}", status_code=303)
