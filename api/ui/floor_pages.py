"""Console pages for the shop floor: production orders to complete (make-to-order lines) and
shipments a carrier reported an exception for, to call lost or wait for. Each action is the
function of the API route it mirrors (POST /production-orders/{id}/complete,
POST /orders/{id}/carrier-exception)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import and_, func, select

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.routes import orders, production
from api.ui.web import PAGE_SIZE, ConsoleRoute, may, render
from db.models import Customer, Order, OrderEvent, ProductionOrder, Shipment
from domain.status import FINAL_STATUSES
from domain.types import DbId, Text2000

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

PageNo = Annotated[int, Query(ge=1, le=10_000)]
ProductionStatus = Literal["open", "completed", "cancelled"]
FINAL = [s.value for s in FINAL_STATUSES]
LOST_OR_WAIT = {
    "lost": "Called lost: its invoice is credited and the order ends failed.",
    "wait": "Kept waiting: the order follows the shipment until the carrier reports more.",
}


async def _production_page(
    request: Request,
    session: SessionDep,
    user: Caller,
    status: ProductionStatus = "open",
    page: int = 1,
    status_code: int = 200,
    problem: str | None = None,
    done: int | None = None,
) -> Response:
    """GET /production-orders' rows (the same status filter and order: due date first), a
    page at a time, with each order's customer."""
    q = (
        select(ProductionOrder, Order.customer_code, Customer.name)
        .join(Order, Order.id == ProductionOrder.order_id)
        .join(Customer, Customer.code == Order.customer_code)
        .where(ProductionOrder.status == status)
        .order_by(ProductionOrder.due_date, ProductionOrder.id)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    found = (await session.execute(q)).all()
    rows = [
        {"p": production._out(p), "customer_code": code, "customer_name": name}
        for p, code, name in found[:PAGE_SIZE]
    ]
    return render(
        request,
        "production.html",
        user,
        status_code=status_code,
        rows=rows,
        more=len(found) > PAGE_SIZE,
        page=page,
        status=status,
        problem=problem,
        done=done,
        can_complete=may(user, "POST", "/ui/production/{production_id}/complete"),
    )


@router.get("/production")
async def production_list(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    status: ProductionStatus = "open",
    page: PageNo = 1,
    done: int = 0,
) -> Response:
    return await _production_page(request, session, user, status, page, done=done or None)


@router.post("/production/{production_id}/complete")
async def production_complete(
    request: Request,
    production_id: DbId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """POST /production-orders/{id}/complete's own function; 404 and 409 as sentences."""
    try:
        await production.complete(production_id, session, state.client, user)
    except HTTPException as err:
        await session.rollback()
        return await _production_page(
            request, session, user, status_code=err.status_code, problem=str(err.detail)
        )
    return RedirectResponse(f"/ui/production?done={production_id}", status_code=303)


async def _exceptions_page(
    request: Request,
    session: SessionDep,
    user: Caller,
    page: int = 1,
    status_code: int = 200,
    problem: str | None = None,
    done: str | None = None,
    order_id: str | None = None,
) -> Response:
    """Open orders with a shipment the carrier reported an exception for, oldest report
    first, with ops' last decision to wait (if any)."""
    reported = (
        select(func.min(OrderEvent.at))
        .where(
            OrderEvent.order_id == Shipment.order_id,
            OrderEvent.step_key == func.concat("carrier:", Shipment.tracking_number, ":exception"),
        )
        .scalar_subquery()
    )
    waited = (
        select(
            func.concat(
                OrderEvent.detail, " (", func.to_char(OrderEvent.at, "YYYY-MM-DD HH24:MI"), " UTC)"
            )
        )
        .where(
            OrderEvent.order_id == Shipment.order_id,
            OrderEvent.step_key.startswith(
                func.concat("exception-wait:", Shipment.tracking_number, ":")
            ),
        )
        .order_by(OrderEvent.at.desc())
        .limit(1)
        .scalar_subquery()
    )
    q = (
        select(Shipment, Order, Customer.name, reported.label("reported"), waited.label("waited"))
        .join(Order, and_(Order.id == Shipment.order_id, Order.status.not_in(FINAL)))
        .join(Customer, Customer.code == Order.customer_code)
        .where(Shipment.status == "exception")
        .order_by(reported.asc().nulls_last(), Shipment.id)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE + 1)
    )
    found = (await session.execute(q)).all()
    return render(
        request,
        "exceptions.html",
        user,
        status_code=status_code,
        rows=found[:PAGE_SIZE],
        more=len(found) > PAGE_SIZE,
        page=page,
        problem=problem,
        done=LOST_OR_WAIT.get(done or ""),
        done_order=order_id,
        can_decide=may(user, "POST", "/ui/orders/{order_id}/carrier-exception"),
    )


@router.get("/exceptions")
async def exception_list(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    page: PageNo = 1,
    done: str | None = None,
    order: orders.OrderId | None = None,
) -> Response:
    return await _exceptions_page(request, session, user, page, done=done, order_id=order)


@router.post("/orders/{order_id}/carrier-exception")
async def carrier_exception(
    request: Request,
    order_id: orders.OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    action: Annotated[Literal["lost", "wait"], Form()],
    comment: Annotated[Text2000, Form()] = "",
) -> Response:
    """POST /orders/{id}/carrier-exception's own function (the workflow's Update): 404 and
    409 (no exception awaits a decision any more) as sentences."""
    body = orders.ExceptionDecisionIn(action=action, comment=comment)
    try:
        await orders.carrier_exception(order_id, body, state, session, user)
    except HTTPException as err:
        return await _exceptions_page(
            request, session, user, status_code=err.status_code, problem=str(err.detail)
        )
    return RedirectResponse(f"/ui/exceptions?done={action}&order={order_id}", status_code=303)
