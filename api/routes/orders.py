"""Orders: create (idempotent), read with its whole story, list, decide, cancel."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from sqlalchemy import Table, select, text
from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import (
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.auth import Caller
from api.deps import CurrentUser, SessionDep, StateDep, channel_scope, require
from api.errors import ErrorBody, ProblemsError, responses
from api.routes.returns import ReturnSummary, returns_of
from db.models import (
    Order,
)
from domain.approvals import Decision
from domain.base import Model, Money
from domain.notices import SubstituteIn
from domain.orders import AmendIn, Amendment, CancelRequest, OrderIn, OrderState
from domain.problems import Problem
from domain.shipping import ExceptionDecision
from domain.status import FINAL_STATUSES, LINES_AMENDABLE, SHIPPED_OR_LATER, OrderStatus
from domain.substitution import Substitution
from domain.types import Code40, Printable, Text2000
from services import disruptions
from services.intake import OrderStartError, check_channel, create_order, ensure_started
from services.metrics import INTAKE_SECONDS, ORDERS_REFUSED, ORDERS_STARTED
from services.temporal import temporal_ui_link, workflow_id
from workflows.order import OrderWorkflow

router = APIRouter(prefix="/orders", tags=["orders"], responses=responses(404, 409))

A = TypeVar("A")

IdemKey = Annotated[str, StringConstraints(min_length=1, max_length=200), Printable()]
OrderId = Code40


class LineOut(Model):
    line_no: int
    sku: str
    quantity: int
    list_price: Money
    unit_price: Money
    line_total: Money
    price_rule: str
    reserved_qty: int
    shipped_qty: int


class ApprovalOut(Model):
    level: int
    role: str
    status: str
    reason: str
    decided_by: str | None
    comment: str
    requested_at: datetime
    decided_at: datetime | None


class ShipmentOut(Model):
    shipment_no: int
    tracking_number: str
    carrier: str
    status: str
    packages: int


class OrderPickListOut(Model):
    """One shipment's pick list; `batch_id`: the floor's list it is walked on (manual mode,
    GET /pick-lists/{id})."""

    id: int
    batch_id: int | None
    shipment_no: int
    attempt: int
    status: str
    lines: list[dict[str, Any]]
    picked_at: datetime | None
    packed_at: datetime | None


class PackageOut(Model):
    shipment_no: int
    seq: int
    weight_kg: Decimal
    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal


class InvoiceOut(Model):
    number: str
    shipment_no: int
    amount: Money
    due_date: date
    credited: bool


class EventOut(Model):
    at: datetime
    status: str | None
    kind: str
    actor: str
    detail: str
    # For a status: how long the order stayed in it (until the next status, or until now).
    seconds_in_status: float | None = None


class OrderOut(Model):
    id: str
    status: str
    awaiting_role: str | None
    customer_code: str
    channel: str
    external_ref: str | None
    subtotal: Money
    order_discount: Money
    total: Money
    currency: str
    ship_to: dict[str, Any]
    requested_delivery_date: date | None
    special_instructions: str | None
    allow_partial: bool
    # normal | urgent, and who set it: rule | caller | ops (docs/warehouse-layout.md).
    priority: str = "normal"
    priority_source: str = "rule"
    failure_reason: str | None
    rules_version: str
    created_at: datetime
    workflow_id: str
    lines: list[LineOut]
    approvals: list[ApprovalOut]
    shipments: list[ShipmentOut]
    # The first invoice (the only one unless the order shipped in parts) and all of them.
    invoice: InvoiceOut | None
    invoices: list[InvoiceOut]
    timeline: list[EventOut]
    # Its returns (RMA), oldest first: GET /returns/{id} has each one's lines and credit.
    returns: list[ReturnSummary] = []
    # The warehouse floor: its pick lists and (manual mode) the packages it was packed in.
    pick_lists: list[OrderPickListOut] = []
    packages: list[PackageOut] = []


class OrderSummary(Model):
    id: str
    status: str
    customer_code: str
    channel: str
    external_ref: str | None
    total: Money
    awaiting_role: str | None
    created_at: datetime
    # When the order last changed status (for a finished order: when it ended).
    updated_at: datetime
    priority: str = "normal"


class OrderPage(Model):
    items: list[OrderSummary]
    next_cursor: str | None


class DecisionIn(Model):
    decision: Literal["approve", "reject"]
    comment: Text2000 = ""


class CancelIn(Model):
    reason: Text2000 = ""


@router.post("", status_code=201, dependencies=[Depends(require("sales", "channel"))])
async def post_order(
    body: OrderIn,
    state: StateDep,
    user: CurrentUser,
    idempotency_key: Annotated[IdemKey | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Validate, price, persist and start an order; answers without waiting for the pipeline."""
    async with state.sessions() as s:
        body = await check_channel(s, user, body)  # 403 for another caller's channel
    started = time.perf_counter()
    try:
        answer, created = await create_order(
            state.sessions,
            state.client,
            state.settings,
            body,
            idempotency_key=idempotency_key,
            actor=user.name,
            scope=user.scope,
        )
    except ProblemsError:
        ORDERS_REFUSED.labels(body.channel).inc()
        raise
    except OrderStartError as err:
        raise HTTPException(503, f"{err}; retry with the same Idempotency-Key to start it") from err
    finally:
        INTAKE_SECONDS.observe(time.perf_counter() - started)
    if created:
        ORDERS_STARTED.labels(body.channel).inc()
    return JSONResponse(status_code=201 if created or idempotency_key else 200, content=answer)


def _rows(table: str, order_by: str, **fields: str) -> str:
    """A JSON array of one child table's rows of the order, with the fields its Out model
    has (name: SQL expression), in `order_by` order."""
    obj = ", ".join(f"'{name}', {expr}" for name, expr in fields.items())
    return (
        f"(SELECT coalesce(json_agg(json_build_object({obj}) ORDER BY {order_by}), '[]')::text"
        f" FROM {table} c WHERE c.order_id = o.id)"
    )


def _same(*names: str) -> dict[str, str]:
    return {n: f"c.{n}" for n in names}


# The order and every child list in one round trip (docs/performance.md "Reads at scale"):
# each list a JSON array built by PostgreSQL from its (order_id, ...) index; returns are read
# only for an order that has some.
_DETAIL = text(
    f"""
SELECT o.id, o.status, o.awaiting_role, o.customer_code, o.channel, o.external_ref,
       o.subtotal, o.order_discount, o.total, o.currency, o.ship_to,
       o.requested_delivery_date, o.special_instructions, o.allow_partial, o.priority,
       o.priority_source, o.failure_reason, o.price_rules_version, o.created_at,
       {_rows("order_lines", "c.line_no", **_same(*LineOut.model_fields))} AS lines,
       {_rows("approvals", "c.level", **_same(*ApprovalOut.model_fields))} AS approvals,
       {_rows("shipments", "c.shipment_no", **_same(*ShipmentOut.model_fields))} AS shipments,
       {_rows("invoices", "c.shipment_no", **_same(*InvoiceOut.model_fields))} AS invoices,
       {_rows("order_events", "c.at, c.id", **_same("at", "status", "kind", "actor", "detail"))}
           AS events,
       {
        _rows(
            "pick_lists",
            "c.wave, c.attempt",
            **_same("id", "batch_id", "attempt", "status", "lines", "picked_at", "packed_at"),
            shipment_no="c.wave",
        )
    } AS pick_lists,
       {_rows("packages", "c.shipment_no, c.seq", **_same(*PackageOut.model_fields))}
           AS packages,
       EXISTS (SELECT 1 FROM returns r WHERE r.order_id = o.id) AS has_returns
FROM orders o WHERE o.id = :id
"""
)


def _json(value: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(value, parse_float=Decimal)
    return rows


async def load_order(session: SessionDep, order_id: str) -> OrderOut:
    row = (await session.execute(_DETAIL, {"id": order_id})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    invoices = [InvoiceOut.model_validate(i) for i in _json(row["invoices"])]
    return OrderOut(
        id=row["id"],
        status=row["status"],
        awaiting_role=row["awaiting_role"],
        customer_code=row["customer_code"],
        channel=row["channel"],
        external_ref=row["external_ref"],
        subtotal=row["subtotal"],
        order_discount=row["order_discount"],
        total=row["total"],
        currency=row["currency"],
        ship_to=row["ship_to"],
        requested_delivery_date=row["requested_delivery_date"],
        special_instructions=row["special_instructions"],
        allow_partial=row["allow_partial"],
        priority=row["priority"],
        priority_source=row["priority_source"],
        failure_reason=row["failure_reason"],
        rules_version=row["price_rules_version"],
        created_at=row["created_at"],
        workflow_id=workflow_id(row["id"]),
        lines=[LineOut.model_validate(ln) for ln in _json(row["lines"])],
        approvals=[ApprovalOut.model_validate(a) for a in _json(row["approvals"])],
        shipments=[ShipmentOut.model_validate(s) for s in _json(row["shipments"])],
        invoice=invoices[0] if invoices else None,
        invoices=invoices,
        timeline=_timeline(_json(row["events"]), row["status"]),
        returns=await returns_of(session, order_id) if row["has_returns"] else [],
        pick_lists=[OrderPickListOut.model_validate(p) for p in _json(row["pick_lists"])],
        packages=[PackageOut.model_validate(p) for p in _json(row["packages"])],
    )


def _timeline(events: list[dict[str, Any]], current: str) -> list[EventOut]:
    out = [EventOut.model_validate(e) for e in events]
    status_rows = [e for e in out if e.kind == "status"]
    for this, following in zip(status_rows, status_rows[1:], strict=False):
        this.seconds_in_status = round((following.at - this.at).total_seconds(), 3)
    if status_rows and current not in {s.value for s in FINAL_STATUSES}:
        last = status_rows[-1]
        last.seconds_in_status = round((datetime.now(UTC) - last.at).total_seconds(), 3)
    return out


def _json_response(model: Model) -> Response:
    """`model` as the JSON FastAPI would send, without its second validation pass over a
    model the route has just built (the route's `response_model` still documents it)."""
    return Response(model.model_dump_json(), media_type="application/json")


class HistoryOut(Model):
    order_id: str
    workflow_id: str
    temporal_ui_url: str
    status: str


@router.get("/{order_id}/history")
async def history(
    order_id: OrderId, state: StateDep, session: SessionDep, user: CurrentUser
) -> HistoryOut:
    """Where to see the order's workflow history in the Temporal UI."""
    order = await _order_or_404(session, order_id, user)
    return HistoryOut(
        order_id=order.id,
        workflow_id=workflow_id(order.id),
        status=order.status,
        temporal_ui_url=temporal_ui_link(state.settings, order.id),
    )


async def read_order(order_id: str, session: SessionDep, user: CurrentUser) -> OrderOut:
    """The order as the caller may see it (the console's pages use it too)."""
    order = await load_order(session, order_id)
    own = channel_scope(user)
    if own is not None and order.channel != own:  # as _order_or_404: another channel's
        raise HTTPException(404, f"no order {order_id}")
    return order


@router.get("/{order_id}", response_model=OrderOut)
async def get_order(order_id: OrderId, session: SessionDep, user: CurrentUser) -> Response:
    return _json_response(await read_order(order_id, session, user))


# The columns a page shows (OrderSummary's fields), read as plain Core rows: no ORM
# objects, no ORM row processing.
_ORDERS = cast(Table, Order.__table__)
_SUMMARY_FIELDS = tuple(OrderSummary.model_fields)
_SUMMARY_COLUMNS = [_ORDERS.c[name] for name in _SUMMARY_FIELDS]


@router.get("", response_model=OrderPage)
async def list_orders(
    session: SessionDep,
    user: CurrentUser,
    status: OrderStatus | None = None,
    customer_code: Code40 | None = None,
    channel: Code40 | None = None,
    updated_since: Annotated[
        datetime | None, Query(description="only orders whose status changed at or after")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Code40 | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Newest first, filtered; page with `cursor`. Integrations poll for changes with
    `updated_since`."""
    o = _ORDERS.c
    q = select(*_SUMMARY_COLUMNS).order_by(o.id.desc()).limit(limit + 1)
    own = channel_scope(user)
    if own is not None:  # a channel token lists its own channel's orders only
        q = q.where(o.channel == own)
    if updated_since is not None:
        q = q.where(o.updated_at >= updated_since)
    if status is not None:
        q = q.where(o.status == status.value)
    if customer_code is not None:
        q = q.where(o.customer_code == customer_code)
    if channel is not None:
        q = q.where(o.channel == channel)
    if cursor is not None:
        q = q.where(o.id < cursor)
    found = (await session.execute(q)).all()
    page = found[:limit]
    return _json_response(
        OrderPage.model_validate(
            {
                "items": [dict(zip(_SUMMARY_FIELDS, row, strict=True)) for row in page],
                "next_cursor": page[-1].id if len(found) > limit else None,
            }
        )
    )


async def _start_if_stranded(state: StateDep, order_id: str) -> bool:
    """An order stored while Temporal was down is `received` with no workflow yet (recovery
    starts it within seconds). A change sent to it meanwhile must not hear "finished": start
    it now (idempotent by workflow id, as recovery does) so the change can reach it. True
    when it was such an order; 503 when Temporal still cannot start it."""
    async with state.sessions() as s:
        status = await s.scalar(select(Order.status).where(Order.id == order_id))
        if status != OrderStatus.RECEIVED.value:
            return False
        try:
            await ensure_started(s, state.client, state.settings, order_id)
        except (RPCError, SQLAlchemyError):
            raise  # Temporal or PostgreSQL down: the outage handlers' 503
        except Exception as err:
            raise HTTPException(
                503,
                f"order {order_id} is stored but its pipeline has not started yet; "
                "retry in a moment",
                headers={"Retry-After": "5"},
            ) from err
    return True


async def _update(
    state: StateDep,
    order_id: str,
    update: UpdateMethodMultiParam[[OrderWorkflow, A], Any],
    arg: A,
) -> OrderState:
    """Send an Update to the order's workflow. Between two of its steps the server can answer
    'not ready' for a moment: retried a few times before the caller hears about it. An order
    whose workflow never started (stored during an outage) is started first."""
    handle = state.client.get_workflow_handle(workflow_id(order_id))
    stranded_checked = False
    for attempt in range(5):
        try:
            result: OrderState = await handle.execute_update(update, arg)
            return result
        except WorkflowUpdateFailedError as err:
            # The workflow refuses changes until its run has begun (an order just started,
            # e.g. by the stranded-order path above): a moment later it takes them.
            not_ready = getattr(err.cause, "type", None) == "NotReady"
            if not not_ready or attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not stranded_checked:
                stranded_checked = True
                if await _start_if_stranded(state, order_id):
                    continue
            if err.status != RPCStatusCode.FAILED_PRECONDITION or attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class CancelOut(OrderState):
    """The order's state after a cancel. `cancel`: `completed` (200) when it took effect, the
    order ended cancelled (or, after a partial shipment, its remainder was); `pending` (202)
    when the order accepted it but is busy in a step: it takes effect at the next one."""

    cancel: Literal["completed", "pending"]


class CancelNotTaken(Exception):
    """The order's workflow did not take the cancel in time (its worker busy or down)."""


async def _bounded(coro: Any, seconds: float) -> Any:
    """Await `coro` for at most `seconds`, then TimeoutError. Not asyncio.wait_for: the SDK
    turns the cancellation of its call into its own error, which would hide the timeout."""
    task = asyncio.ensure_future(coro)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.1))
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # the SDK's "RPC cancelled": expected, not worth raising
    if not done:
        raise TimeoutError()
    return task.result()


async def _cancel_within(state: StateDep, order_id: str, req: CancelRequest) -> OrderState | None:
    """Send the cancel Update; its answer once it took effect, or None when the workflow
    accepted it but it has not taken effect within `cancel_wait_seconds`. One Update id per
    order: a repeated cancel joins the one in flight instead of being refused."""
    handle = state.client.get_workflow_handle(workflow_id(order_id))
    deadline = time.monotonic() + state.settings.cancel_wait_seconds
    stranded_checked = False
    for attempt in range(5):
        try:
            update = await _bounded(
                handle.start_update(
                    OrderWorkflow.cancel,
                    req,
                    id=f"cancel-{order_id}",
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                ),
                deadline - time.monotonic(),
            )
            break
        except TimeoutError as err:
            raise CancelNotTaken() from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and not stranded_checked:
                stranded_checked = True  # stored during an outage: start it, then cancel it
                if await _start_if_stranded(state, order_id):
                    continue
            if err.status != RPCStatusCode.FAILED_PRECONDITION or attempt == 4:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    try:
        return await _bounded(update.result(), deadline - time.monotonic())
    except TimeoutError:
        return None
    except WorkflowUpdateFailedError as err:
        # Orders started before patch "cancel-waits-for-effect" fail the Update after 30 s
        # of waiting, although the cancel goes on.
        if isinstance(err.cause, ApplicationError) and err.cause.type == "TimeoutError":
            return None
        raise


async def _current_state(
    state: StateDep, session: SessionDep, order: Order, req: CancelRequest
) -> OrderState:
    """The workflow's live state; from PostgreSQL when the workflow cannot answer at once."""
    handle = state.client.get_workflow_handle(workflow_id(order.id))
    try:
        return await handle.query(OrderWorkflow.state, rpc_timeout=timedelta(seconds=2))
    except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
        await session.refresh(order)
        return OrderState(
            order_id=order.id,
            status=OrderStatus(order.status),
            awaiting_role=order.awaiting_role,
            cancel_reason=req.reason,
        )


def _update_error(err: Exception, order_id: str) -> HTTPException:
    """Map a refused workflow update to the HTTP status a caller can act on."""
    cause = err.cause if isinstance(err, WorkflowUpdateFailedError) else None
    if isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError):
        if cause.cause.type == "InvalidData":  # the database refused a value (never retried)
            problem = Problem(loc=["body"], code="invalid_data", message=cause.cause.message)
            raise ProblemsError([problem])
    if isinstance(err, WorkflowUpdateFailedError) and isinstance(err.cause, ApplicationError):
        if err.cause.type == "InvalidAmendment" and err.cause.details:
            raise ProblemsError([Problem.model_validate(p) for p in err.cause.details[0]])
        code = {"WrongRole": 403}.get(err.cause.type or "", 409)
        return HTTPException(code, err.cause.message)
    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
        return HTTPException(409, f"order {order_id} has finished: nothing more can change")
    if isinstance(err, RPCError) and err.status == RPCStatusCode.FAILED_PRECONDITION:
        return HTTPException(409, f"order {order_id} is between two steps; retry in a moment")
    raise err


async def _order_or_404(session: SessionDep, order_id: str, user: Caller | None = None) -> Order:
    """The order, or 404, also when it belongs to a channel other than a channel token's."""
    order = await session.get(Order, order_id)
    own = channel_scope(user) if user is not None else None
    if order is None or (own is not None and order.channel != own):
        raise HTTPException(404, f"no order {order_id}")
    return order


@router.post("/{order_id}/decision")
async def decide(
    order_id: OrderId, body: DecisionIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> OrderState:
    """Approve or reject the pending approval level (an Update: answers once applied)."""
    order = await _order_or_404(session, order_id, user)
    if order.awaiting_role is not None and user.role != order.awaiting_role:
        raise HTTPException(
            403, f"order {order_id} waits for role {order.awaiting_role}, you are {user.role}"
        )
    decision = Decision(decision=body.decision, comment=body.comment, by=user.name, role=user.role)
    for attempt in range(10):
        try:
            return await _update(state, order_id, OrderWorkflow.decide, decision)
        except (WorkflowUpdateFailedError, RPCError) as err:
            # The level is in the inbox (PostgreSQL) a moment before the workflow, busy or
            # recovering a task, has it open: retry briefly rather than answer "nothing".
            await session.refresh(order)
            pending_in_db = order.awaiting_role is not None
            nothing = isinstance(err, WorkflowUpdateFailedError) and (
                getattr(err.cause, "type", None) == "NothingPending"
            )
            if not (pending_in_db and nothing) or attempt == 9:
                raise _update_error(err, order_id) from err
            await asyncio.sleep(0.3)
    raise AssertionError("unreachable")


@router.post("/{order_id}/retry-shipping", dependencies=[Depends(require("ops"))])
async def retry_shipping(
    order_id: OrderId, state: StateDep, session: SessionDep, user: CurrentUser
) -> OrderState:
    """After the carrier refused a booking for good and the cause is fixed: book again."""
    await _order_or_404(session, order_id)
    try:
        return await _update(
            state,
            order_id,
            OrderWorkflow.retry_shipping,
            CancelRequest(reason="retry", by=user.name),
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise _update_error(err, order_id) from err


@router.post(
    "/{order_id}/cancel",
    dependencies=[Depends(require("sales", "channel", "ops"))],
    response_description="Done (`cancel`: `completed`): the order is cancelled, or after a "
    "partial shipment its remainder is.",
    responses={
        202: {
            "model": CancelOut,
            "description": "Accepted and pending (`cancel`: `pending`): the order is busy in a "
            "step and is cancelled at the next one; the body is its current state.",
        },
        409: {
            "model": ErrorBody,
            "description": "It can never be cancelled: it has shipped, or it is over.",
        },
    },
)
async def cancel(
    order_id: OrderId,
    body: CancelIn,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
    response: Response,
) -> CancelOut:
    """Cancel before shipment; everything already done is compensated. 200 once it took
    effect; 202 when the order accepted it but is busy in a step (it is cancelled at the
    next one: follow GET /orders/{id}); 409 only when it can never be cancelled."""
    order = await _order_or_404(session, order_id, user)
    if order.status in {st.value for st in SHIPPED_OR_LATER}:
        raise HTTPException(
            409,
            f"order {order_id} is {order.status}: it has shipped, so it cannot be "
            f"cancelled; raise a return instead: POST /orders/{order_id}/returns",
        )
    if order.status in {st.value for st in FINAL_STATUSES}:
        raise HTTPException(409, f"order {order_id} is {order.status}: it is over")
    req = CancelRequest(reason=body.reason, by=user.name)
    try:
        done = await _cancel_within(state, order_id, req)
    except CancelNotTaken as err:
        raise HTTPException(
            503,
            f"order {order_id} did not take the cancel within "
            f"{state.settings.cancel_wait_seconds:g} s (its worker is busy or down); send it "
            "again: a repeated cancel joins this one",
            headers={"Retry-After": "5"},
        ) from err
    except RPCError as err:
        if err.status == RPCStatusCode.FAILED_PRECONDITION:
            raise HTTPException(
                503,
                f"order {order_id} is between two steps; retry in a moment",
                headers={"Retry-After": "1"},
            ) from err
        raise _update_error(err, order_id) from err
    except WorkflowUpdateFailedError as err:
        raise _update_error(err, order_id) from err
    if done is not None:
        return CancelOut(**done.model_dump(), cancel="completed")
    response.status_code = 202
    current = await _current_state(state, session, order, req)
    return CancelOut(**current.model_dump(), cancel="pending")


class ExceptionDecisionIn(Model):
    action: Literal["lost", "wait"]
    comment: Text2000 = ""


@router.patch("/{order_id}", dependencies=[Depends(require("sales", "channel"))])
async def amend(
    order_id: OrderId, body: AmendIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> OrderOut:
    """Amend an order (an Update with a validator): lines until stock is reserved (the order
    is re-validated, re-priced and re-routed), ship-to and requested date until it ships.
    Answers the amended order; 422 with every problem when the change is invalid, 409 when
    the order can no longer take it."""
    order = await _order_or_404(session, order_id, user)
    if order.status in {st.value for st in SHIPPED_OR_LATER | FINAL_STATUSES}:
        raise HTTPException(409, f"order {order_id} is {order.status}: it can no longer change")
    try:
        await _update(
            state,
            order_id,
            OrderWorkflow.amend,
            Amendment(change=body, by=user.name, role=user.role),
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise _update_error(err, order_id) from err
    session.expunge_all()  # read the order as the workflow left it
    return await load_order(session, order_id)


@router.post("/{order_id}/substitute", dependencies=[Depends(require("sales", "channel"))])
async def substitute(
    order_id: OrderId, body: SubstituteIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> OrderOut:
    """Replace the lines of `sku` by one of its substitutes, same quantity (a disruption's
    way out). Before reservation: the amend Update of PATCH (re-validated, re-priced,
    re-routed). Once stock is being reserved: the `substitute` Update, taken while the order
    is backordered (its other lines keep their prices; a rise above the approved total: 409)."""
    order = await _order_or_404(session, order_id, user)
    try:
        lines = await disruptions.substitute_lines(session, order_id, body.sku, body.substitute)
    except disruptions.DisruptionError as err:
        field = str(err).split(":", 1)[0]
        problem = Problem(loc=["body", field], code="not_substitutable", message=str(err))
        raise ProblemsError([problem]) from err
    ended = SHIPPED_OR_LATER | FINAL_STATUSES  # the amend path answers those 409 at once
    if order.status not in {st.value for st in LINES_AMENDABLE | ended}:
        sub = Substitution(sku=body.sku, substitute=body.substitute, by=user.name)
        try:
            await _update(state, order_id, OrderWorkflow.substitute, sub)
        except (WorkflowUpdateFailedError, RPCError) as err:
            raise _update_error(err, order_id) from err
        session.expunge_all()  # read the order as the workflow left it
        return await load_order(session, order_id)
    change = AmendIn(lines=lines, comment=f"substitute {body.substitute} for {body.sku}")
    return await amend(order_id, change, state, session, user)


@router.post("/{order_id}/carrier-exception", dependencies=[Depends(require("ops"))])
async def carrier_exception(
    order_id: OrderId,
    body: ExceptionDecisionIn,
    state: StateDep,
    session: SessionDep,
    user: CurrentUser,
) -> OrderState:
    """Decide on a shipment the carrier reported an exception for: `lost` credits its
    invoice and ends the order `failed`; `wait` keeps following it."""
    await _order_or_404(session, order_id)
    try:
        return await _update(
            state,
            order_id,
            OrderWorkflow.resolve_exception,
            ExceptionDecision(action=body.action, comment=body.comment, by=user.name),
        )
    except (WorkflowUpdateFailedError, RPCError) as err:
        raise _update_error(err, order_id) from err
