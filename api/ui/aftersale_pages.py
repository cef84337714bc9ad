"""Console actions for what comes around an order: ops setting its priority, an approver
deciding on a return, ops declaring and lifting disruptions. Each is the function of the API
route it mirrors (PUT /orders/{id}/priority, POST /returns/{id}/decision, POST /disruptions,
POST /disruptions/{id}/lift)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.errors import ProblemsError
from api.routes import disruptions, priority, returns
from api.routes.orders import OrderId
from api.ui import pages
from api.ui.web import ConsoleRoute, may, render
from domain.notices import DisruptionIn
from domain.returns import ReturnDecisionIn
from domain.types import Code40, DbId, Text2000

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)

FormText = Annotated[str, Form(max_length=2000)]


def _sentences(err: ValidationError) -> list[str]:
    return [f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in err.errors()]


@router.post("/orders/{order_id}/priority")
async def set_priority(
    request: Request,
    order_id: OrderId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    priority_: Annotated[str, Form(alias="priority", max_length=20)] = "",
    reason: FormText = "",
) -> Response:
    """PUT /orders/{id}/priority's own function: kept whatever the rules say later."""
    try:
        body = priority.PriorityIn.model_validate({"priority": priority_, "reason": reason})
        await priority.set_priority(order_id, body, session, user)
    except ValidationError as err:
        problem = "The priority was not changed: " + "; ".join(_sentences(err))
        return await pages._order_page(request, state, session, user, order_id, 422, problem)
    except HTTPException as err:
        if err.status_code == 404:
            raise
        await session.rollback()
        return await pages._order_page(
            request, state, session, user, order_id, err.status_code, str(err.detail)
        )
    return RedirectResponse(f"/ui/orders/{order_id}?done=priority", status_code=303)


@router.post("/returns/{rma_id}/decision")
async def decide_return(
    request: Request,
    rma_id: Code40,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    decision: Annotated[Literal["approve", "reject"], Form()],
    comment: Annotated[Text2000, Form()] = "",
) -> Response:
    """POST /returns/{id}/decision's own function (the return workflow's Update); 403 and
    409 come back on the approvals page as sentences."""
    body = ReturnDecisionIn(decision=decision, comment=comment)
    try:
        await returns.decide_return(rma_id, body, state, session, user)
    except (HTTPException, ProblemsError) as err:
        if isinstance(err, HTTPException) and err.status_code == 404:
            raise
        await session.rollback()
        detail = (
            str(err.detail)
            if isinstance(err, HTTPException)
            else "; ".join(p.message for p in err.problems)
        )
        return await pages.approvals_page(
            request, state, session, user, status_code=err.status_code, problem=detail
        )
    return RedirectResponse(f"/ui/approvals?done=return-{decision}&ref={rma_id}", status_code=303)


DISRUPTION_DONE = {
    "declared": "Disruption #{ref} declared: the SKU cannot be reserved; the open orders that "
    "need it were told.",
    "lifted": "Disruption #{ref} lifted: the orders waiting for the SKU were woken, urgent first.",
}


async def _disruptions_page(
    request: Request,
    session: SessionDep,
    user: Caller,
    active: bool | None = True,
    status_code: int = 200,
    problems: list[str] | None = None,
    typed: dict[str, str] | None = None,
    done: str | None = None,
) -> Response:
    await session.rollback()
    rows = await disruptions.list_disruptions(session, active)
    return render(
        request,
        "disruptions.html",
        user,
        status_code=status_code,
        rows=rows[:100],
        active=active,
        problems=problems or [],
        typed=typed or {},
        done=done,
        today=datetime.now(UTC).date(),
        can_declare=may(user, "POST", "/ui/disruptions"),
        can_lift=may(user, "POST", "/ui/disruptions/{disruption_id}/lift"),
    )


@router.get("/disruptions")
async def disruption_list(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    show: Literal["active", "all"] = "active",
    done: Literal["declared", "lifted"] | None = None,
    ref: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    message = DISRUPTION_DONE[done].format(ref=ref) if done and ref else None
    active = True if show == "active" else None
    return await _disruptions_page(request, session, user, active, done=message)


@router.post("/disruptions")
async def declare(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    sku: Annotated[str, Form(max_length=200)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    reason: FormText = "",
) -> Response:
    """POST /disruptions' own function; every problem (SKU, date, reason) named."""
    typed = {"sku": sku, "until": until, "reason": reason}
    try:
        body = DisruptionIn.model_validate(
            {"sku": sku.strip().upper(), "until": until, "reason": reason}
        )
        out = await disruptions.declare(body, session, user)
    except ValidationError as err:
        return await _disruptions_page(
            request, session, user, status_code=422, problems=_sentences(err), typed=typed
        )
    except ProblemsError as err:
        problems = [f"{'.'.join(map(str, p.loc[1:]))}: {p.message}" for p in err.problems]
        return await _disruptions_page(
            request, session, user, status_code=err.status_code, problems=problems, typed=typed
        )
    except HTTPException as err:
        return await _disruptions_page(
            request,
            session,
            user,
            status_code=err.status_code,
            problems=[str(err.detail)],
            typed=typed,
        )
    return RedirectResponse(f"/ui/disruptions?done=declared&ref={out.id}", status_code=303)


@router.post("/disruptions/{disruption_id}/lift")
async def lift(
    request: Request,
    disruption_id: DbId,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> Response:
    """POST /disruptions/{id}/lift's own function: the orders waiting for the SKU wake."""
    try:
        await disruptions.lift(disruption_id, session, state.client, user)
    except HTTPException as err:
        if err.status_code == 404:
            raise
        return await _disruptions_page(
            request, session, user, status_code=err.status_code, problems=[str(err.detail)]
        )
    return RedirectResponse(f"/ui/disruptions?done=lifted&ref={disruption_id}", status_code=303)
