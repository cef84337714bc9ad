"""Returns (RMA): request one for a shipped order, read it, decide on it, receive the goods.

Each return is its own ReturnWorkflow (workflows/returns.py), started here once its row is
stored; the decision and the receipt are Updates that answer once they took effect.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from api.deps import Caller, CurrentUser, SessionDep, StateDep, channel_scope, require
from api.errors import ProblemsError, responses
from db import repo
from db.models import (
    CreditNote,
    Order,
    OrderLine,
    Return,
    ReturnLineRow,
    ReturnReceipt,
    Shipment,
)
from domain.base import Model, Money
from domain.problems import Problem
from domain.returns import (
    RETURN_OPEN,
    RETURNABLE_ORDER,
    Receipt,
    ReceiveIn,
    ReturnCancel,
    ReturnCancelIn,
    ReturnDecision,
    ReturnDecisionIn,
    ReturnIn,
    ReturnLine,
    ReturnPolicy,
    ReturnStatus,
    ReturnWorkflowInput,
    credit_value,
    policy_of,
    quantity_problems,
)
from domain.types import Code40, Printable
from workflows.returns import ReturnWorkflow, return_workflow_id

router = APIRouter(tags=["returns"], responses=responses(404, 409))

A = TypeVar("A")
IdemKey = Annotated[str, StringConstraints(min_length=1, max_length=200), Printable()]


class ReturnLineOut(Model):
    sku: str
    quantity: int
    unit_price: Money
    received_qty: int


class ReceiptOut(Model):
    sku: str
    condition: str
    quantity: int
    received_by: str
    received_at: datetime


class CreditNoteOut(Model):
    number: str
    invoice_number: str
    amount: Money


class ReturnSummary(Model):
    id: str
    order_id: str
    status: str
    reason: str
    amount: Money
    awaiting_role: str | None
    credited_amount: Money | None
    created_at: datetime


class ReturnOut(ReturnSummary):
    note: str | None
    days_since_delivery: int
    approval_reason: str | None
    decided_by: str | None
    decision_comment: str | None
    failure_reason: str | None
    requested_by: str
    workflow_id: str
    lines: list[ReturnLineOut]
    receipts: list[ReceiptOut]
    credit_notes: list[CreditNoteOut]


def _policy(state: StateDep) -> ReturnPolicy:
    return policy_of(state.settings)


async def load_return(session: AsyncSession, rma_id: str) -> ReturnOut:
    rma = await session.get(Return, rma_id)
    if rma is None:
        raise HTTPException(404, f"no return {rma_id}")

    async def rows(model: Any, *order_by: Any) -> list[Any]:
        q = select(model).where(model.return_id == rma_id).order_by(*order_by)
        return list((await session.scalars(q)).all())

    return ReturnOut(
        **ReturnSummary.model_validate(rma, from_attributes=True).model_dump(),
        note=rma.note,
        days_since_delivery=rma.days_since_delivery,
        approval_reason=rma.approval_reason,
        decided_by=rma.decided_by,
        decision_comment=rma.decision_comment,
        failure_reason=rma.failure_reason,
        requested_by=rma.requested_by,
        workflow_id=return_workflow_id(rma.id),
        lines=[
            ReturnLineOut.model_validate(r, from_attributes=True)
            for r in await rows(ReturnLineRow, ReturnLineRow.sku)
        ],
        receipts=[
            ReceiptOut.model_validate(r, from_attributes=True)
            for r in await rows(ReturnReceipt, ReturnReceipt.id)
        ],
        credit_notes=[
            CreditNoteOut.model_validate(c, from_attributes=True)
            for c in await rows(CreditNote, CreditNote.number)
        ],
    )


async def returns_of(session: AsyncSession, order_id: str) -> list[ReturnSummary]:
    """The returns of an order, oldest first (GET /orders/{id} lists them)."""
    found = await session.scalars(
        select(Return).where(Return.order_id == order_id).order_by(Return.created_at, Return.id)
    )
    return [ReturnSummary.model_validate(r, from_attributes=True) for r in found.all()]


async def _return_or_404(session: AsyncSession, rma_id: str, user: Caller) -> Return:
    """The return, or 404, also when its order belongs to another channel than a channel
    token's."""
    rma = await session.get(Return, rma_id)
    own = channel_scope(user)
    if rma is not None and own is not None:
        channel = await session.scalar(select(Order.channel).where(Order.id == rma.order_id))
        if channel != own:
            rma = None
    if rma is None:
        raise HTTPException(404, f"no return {rma_id}")
    return rma


def _request_hash(order_id: str, body: ReturnIn) -> str:
    return hashlib.sha256(f"{order_id}\n{body.model_dump_json()}".encode()).hexdigest()


async def _returnable(
    s: AsyncSession, order: Order, body: ReturnIn
) -> tuple[list[ReturnLine], Decimal, int]:
    """The lines with the order's prices, the amount and the days since delivery; 409 for
    an order that has not shipped, 422 naming every line that asks for too much."""
    if order.status not in {st.value for st in RETURNABLE_ORDER}:
        raise HTTPException(
            409,
            f"order {order.id} is {order.status}: only a shipped, delivered or completed "
            "order can be returned",
        )
    lines = (
        await s.execute(
            select(
                OrderLine.sku,
                func.sum(OrderLine.shipped_qty),
                func.min(OrderLine.unit_price),
            )
            .where(OrderLine.order_id == order.id)
            .group_by(OrderLine.sku)
        )
    ).all()
    shipped = {sku: int(q) for sku, q, _ in lines if q}
    prices = {sku: Decimal(p) for sku, _, p in lines}
    claimed = case(
        (Return.status.in_([st.value for st in RETURN_OPEN]), ReturnLineRow.quantity),
        (Return.status == ReturnStatus.REFUSED.value, 0),
        else_=ReturnLineRow.received_qty,
    )
    returned = dict(
        (
            await s.execute(
                select(ReturnLineRow.sku, func.sum(claimed))
                .join(Return, Return.id == ReturnLineRow.return_id)
                .where(Return.order_id == order.id)
                .group_by(ReturnLineRow.sku)
            )
        ).all()
    )
    problems = quantity_problems(body.lines, shipped, {k: int(v) for k, v in returned.items()})
    if problems:
        raise ProblemsError(problems)
    asked: dict[str, int] = {}
    for ln in body.lines:
        asked[ln.sku] = asked.get(ln.sku, 0) + ln.quantity
    ordered_value = await s.scalar(
        select(func.coalesce(func.sum(OrderLine.unit_price * OrderLine.quantity), 0)).where(
            OrderLine.order_id == order.id
        )
    )
    amount = credit_value(asked, prices, order.order_discount, Decimal(ordered_value or 0))
    since = await s.scalar(
        select(func.coalesce(func.max(Shipment.delivered_at), func.min(Shipment.booked_at))).where(
            Shipment.order_id == order.id
        )
    )
    days = max((datetime.now(UTC) - since).days, 0) if since else 0
    return (
        [ReturnLine(sku=sku, quantity=q, unit_price=prices[sku]) for sku, q in asked.items()],
        amount,
        days,
    )


async def _start(state: StateDep, rma: Return, lines: list[ReturnLine]) -> None:
    """Start the return's workflow; idempotent by workflow id (a repeat finds it running)."""
    inp = ReturnWorkflowInput(
        rma_id=rma.id,
        order_id=rma.order_id,
        amount=rma.amount,
        days_since=rma.days_since_delivery,
        policy=_policy(state),
        lines=lines,
    )
    try:
        await state.client.start_workflow(
            ReturnWorkflow.run,
            inp,
            id=return_workflow_id(rma.id),
            task_queue=state.settings.task_queue,
        )
    except WorkflowAlreadyStartedError:
        pass
    except RPCError as err:
        raise HTTPException(
            503,
            f"return {rma.id} is stored but its workflow could not start; retry with the same "
            "Idempotency-Key to start it",
            headers={"Retry-After": "5"},
        ) from err


async def _lines_of(s: AsyncSession, rma_id: str) -> list[ReturnLine]:
    rows = (await s.scalars(select(ReturnLineRow).where(ReturnLineRow.return_id == rma_id))).all()
    return [ReturnLine(sku=r.sku, quantity=r.quantity, unit_price=r.unit_price) for r in rows]


@router.post(
    "/orders/{order_id}/returns",
    status_code=201,
    dependencies=[Depends(require("sales", "channel", "ops"))],
)
async def request_return(
    order_id: Code40,
    body: ReturnIn,
    state: StateDep,
    user: CurrentUser,
    idempotency_key: Annotated[IdemKey | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Request a return of some shipped units; with an Idempotency-Key a repeat answers the
    same return (and starts its workflow if the first attempt could not)."""
    digest = _request_hash(order_id, body)
    async with state.sessions() as s:
        if idempotency_key is not None:
            seen = await s.scalar(
                select(Return).where(
                    Return.idempotency_scope == user.scope,
                    Return.idempotency_key == idempotency_key,
                )
            )
            if seen is not None:
                if seen.request_hash != digest:
                    raise ProblemsError(
                        [
                            Problem(
                                loc=["header", "Idempotency-Key"],
                                code="idempotency_key_reused",
                                message="this Idempotency-Key was used for another request",
                            )
                        ]
                    )
                await _start(state, seen, await _lines_of(s, seen.id))
                out = await load_return(s, seen.id)
                return JSONResponse(status_code=201, content=out.model_dump(mode="json"))
        if s.in_transaction():
            await s.rollback()  # the look-up above: the new return gets its own transaction
        async with s.begin():
            # The order row lock serialises returns of one order: quantities add up.
            order = await s.get(Order, order_id, with_for_update=True)
            own = channel_scope(user)
            if order is None or (own is not None and order.channel != own):
                raise HTTPException(404, f"no order {order_id}")
            lines, amount, days = await _returnable(s, order, body)
            n = await s.scalar(select(func.nextval("return_number_seq")))
            rma = Return(
                id=f"RMA-{n:07d}",
                order_id=order.id,
                status=ReturnStatus.REQUESTED.value,
                reason=body.reason.value,
                note=body.note,
                amount=amount,
                days_since_delivery=days,
                requested_by=user.name,
                idempotency_scope=user.scope if idempotency_key else None,
                idempotency_key=idempotency_key,
                request_hash=digest,
            )
            s.add(rma)
            await s.flush()
            for ln in lines:
                s.add(
                    ReturnLineRow(
                        return_id=rma.id, sku=ln.sku, quantity=ln.quantity, unit_price=ln.unit_price
                    )
                )
            await repo.record_event(
                s,
                order.id,
                f"return:{rma.id}:requested",
                status=None,
                kind="return",
                actor=user.name,
                detail=f"return {rma.id} requested ({body.reason.value}): "
                + ", ".join(f"{ln.quantity} x {ln.sku}" for ln in lines),
            )
        await _start(state, rma, lines)
        out = await load_return(s, rma.id)
    return JSONResponse(status_code=201, content=out.model_dump(mode="json"))


@router.get("/returns")
async def list_returns(
    session: SessionDep,
    user: CurrentUser,
    status: ReturnStatus | None = None,
    order_id: Code40 | None = None,
) -> list[ReturnSummary]:
    """Returns, newest first (500 at most): `?status=awaiting_approval` is the approvers'
    inbox of returns."""
    q = select(Return).order_by(Return.created_at.desc(), Return.id.desc()).limit(500)
    own = channel_scope(user)
    if own is not None:
        q = q.join(Order, Order.id == Return.order_id).where(Order.channel == own)
    if status is not None:
        q = q.where(Return.status == status.value)
    if order_id is not None:
        q = q.where(Return.order_id == order_id)
    return [ReturnSummary.model_validate(r, from_attributes=True) for r in await session.scalars(q)]


@router.get("/returns/{rma_id}")
async def get_return(rma_id: Code40, session: SessionDep, user: CurrentUser) -> ReturnOut:
    await _return_or_404(session, rma_id, user)
    return await load_return(session, rma_id)


async def _update(
    state: StateDep,
    session: SessionDep,
    rma: Return,
    update: UpdateMethodMultiParam[[ReturnWorkflow, A], Any],
    arg: A,
    *expect: ReturnStatus,
) -> ReturnOut:
    """Send an Update to the return's workflow. PostgreSQL shows a status a moment before
    the workflow has moved on from the step that wrote it: retried briefly then."""
    handle = state.client.get_workflow_handle(return_workflow_id(rma.id))
    for attempt in range(20):
        try:
            await handle.execute_update(update, arg)
            break
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            await session.refresh(rma)
            waiting = rma.status in {e.value for e in expect}
            if kind == "NothingPending" and waiting and attempt < 19:
                await asyncio.sleep(0.2)
                continue
            message = cause.message if isinstance(cause, ApplicationError) else str(err)
            if kind == "InvalidReceipt":
                raise ProblemsError(
                    [Problem(loc=["body", "lines"], code="invalid_receipt", message=message)]
                ) from err
            raise HTTPException(403 if kind == "WrongRole" else 409, message) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and rma.status == ReturnStatus.REQUESTED:
                # Stored while Temporal was down: the worker's recovery loop starts it.
                raise HTTPException(
                    503,
                    f"return {rma.id} is stored but its workflow has not started yet; retry",
                    headers={"Retry-After": "5"},
                ) from err
            if err.status == RPCStatusCode.NOT_FOUND:
                raise HTTPException(
                    409, f"return {rma.id} has ended: nothing more can change"
                ) from err
            raise
    session.expunge_all()
    return await load_return(session, rma.id)


@router.post("/returns/{rma_id}/decision")
async def decide_return(
    rma_id: Code40, body: ReturnDecisionIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> ReturnOut:
    """Approve or refuse a return that waits for a person; 403 for another role."""
    rma = await _return_or_404(session, rma_id, user)
    if rma.status != ReturnStatus.AWAITING_APPROVAL.value:
        raise HTTPException(409, f"return {rma_id} is {rma.status}: nothing awaits a decision")
    if user.role not in (rma.awaiting_role, "admin"):
        raise HTTPException(
            403, f"return {rma_id} waits for role {rma.awaiting_role}, you are {user.role}"
        )
    decision = ReturnDecision(
        decision=body.decision, comment=body.comment, by=user.name, role=user.role
    )
    return await _update(
        state, session, rma, ReturnWorkflow.decide, decision, ReturnStatus.AWAITING_APPROVAL
    )


@router.post("/returns/{rma_id}/receive", dependencies=[Depends(require("warehouse", "ops"))])
async def receive_return(
    rma_id: Code40, body: ReceiveIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> ReturnOut:
    """The goods arrived: per line, restock (available again), quarantine or scrap. Answers
    once the credit note is written (status `completed`), or why the return stopped."""
    rma = await _return_or_404(session, rma_id, user)
    if rma.status != ReturnStatus.APPROVED.value:
        raise HTTPException(
            409, f"return {rma_id} is {rma.status}: goods are received only once it is approved"
        )
    receipt = Receipt(rma_id=rma.id, order_id=rma.order_id, lines=body.lines, by=user.name)
    return await _update(
        state, session, rma, ReturnWorkflow.receive, receipt, ReturnStatus.APPROVED
    )


@router.post("/returns/{rma_id}/cancel", dependencies=[Depends(require("sales", "ops"))])
async def cancel_return(
    rma_id: Code40, body: ReturnCancelIn, state: StateDep, session: SessionDep, user: CurrentUser
) -> ReturnOut:
    """Withdraw a return whose goods have not arrived (requested, awaiting approval or
    approved): it ends `cancelled`, nothing to undo. 409 once received, refused or ended."""
    rma = await _return_or_404(session, rma_id, user)
    if rma.status not in {st.value for st in RETURN_OPEN}:
        raise HTTPException(
            409,
            f"return {rma_id} is {rma.status}: only a return whose goods have not been "
            "received can be cancelled",
        )
    cancel = ReturnCancel(reason=body.reason, by=user.name, role=user.role)
    return await _update(state, session, rma, ReturnWorkflow.cancel, cancel, *RETURN_OPEN)
