"""Order intake: validate, price, persist and start, and nothing more (it is the hot path).

Shared by POST /orders and the importers, so every channel passes the same rules.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from orderflow.api.errors import ProblemsError
from orderflow.config import Settings
from orderflow.db import repo
from orderflow.db.models import (
    IdempotencyKey,
    Order,
    OrderEvent,
    RejectedAttempt,
)
from orderflow.db.quotes import line_rows, quote
from orderflow.db.session import SessionFactory
from orderflow.domain.payloads import OrderIn, OrderWorkflowInput, Problem, RoutingRule, SlaPolicy
from orderflow.domain.search_attributes import CHANNEL, CUSTOMER, STATUS, TOTAL
from orderflow.domain.status import OrderStatus
from orderflow.temporal_client import workflow_id


class OrderStartError(RuntimeError):
    """The order is stored but its workflow could not be started (Temporal unreachable)."""

    def __init__(self, order_id: str, cause: Exception):
        super().__init__(f"order {order_id} is stored but its pipeline could not start: {cause}")
        self.order_id = order_id


def request_hash(body: OrderIn) -> str:
    fields = body.model_dump(mode="json")
    if fields.get("allow_partial_shipment") is None:
        del fields["allow_partial_shipment"]  # added later: keeps older keys' hashes valid
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def workflow_input(
    order_id: str,
    customer: str,
    channel: str,
    total: Any,
    settings: Settings,
    routing: tuple[list[RoutingRule], int],
    allow_partial: bool = False,
) -> OrderWorkflowInput:
    """The rules in force now travel with the order for its whole life."""
    return OrderWorkflowInput(
        order_id=order_id,
        customer_code=customer,
        channel=channel,
        total=total,
        routing=routing[0],
        routing_version=routing[1],
        overdue_grace_days=settings.overdue_grace_days,
        sla=SlaPolicy(
            reminder_seconds=settings.approval_reminder_seconds,
            escalation_seconds=settings.approval_escalation_seconds,
            timeout_seconds=settings.approval_timeout_seconds,
        ),
        delivery_poll_seconds=settings.delivery_poll_seconds,
        backorder_max_seconds=settings.backorder_max_seconds,
        backorder_alert_seconds=settings.backorder_alert_seconds,
        delivery_alert_seconds=settings.delivery_alert_seconds,
        allow_partial=allow_partial,
    )


async def start_order_workflow(client: Client, inp: OrderWorkflowInput, task_queue: str) -> None:
    """Start the order's workflow; starting it again (a replayed request) is harmless."""
    try:
        await client.start_workflow(
            "OrderWorkflow",
            inp,
            id=workflow_id(inp.order_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(STATUS, OrderStatus.RECEIVED.value),
                    SearchAttributePair(CUSTOMER, inp.customer_code),
                    SearchAttributePair(CHANNEL, inp.channel),
                    SearchAttributePair(TOTAL, float(inp.total)),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # it ran already and finished: nothing to do


async def _existing(
    session: AsyncSession, key: str | None, digest: str, channel: str, external_ref: str | None
) -> dict[str, Any] | None:
    if key is not None:
        found = await session.get(IdempotencyKey, key)
        if found is not None:
            if found.request_hash != digest:
                raise ProblemsError(
                    [
                        Problem(
                            loc=["header", "Idempotency-Key"],
                            code="idempotency_key_reused",
                            message="this Idempotency-Key was already used with a different body",
                        )
                    ]
                )
            return found.response
    if external_ref is not None:
        order = (
            await session.scalars(
                select(Order).where(Order.channel == channel, Order.external_ref == external_ref)
            )
        ).first()
        if order is not None:
            return {
                "id": order.id,
                "status": order.status,
                "duplicate_of_external_ref": True,
                "customer_code": order.customer_code,
                "channel": order.channel,
                "external_ref": external_ref,
                "total": str(order.total),
            }
    return None


async def create_order(
    sessions: SessionFactory,
    client: Client,
    settings: Settings,
    body: OrderIn,
    *,
    idempotency_key: str | None,
    actor: str,
) -> tuple[dict[str, Any], bool]:
    """Create and start an order; returns (answer, created). Raises ProblemsError on 422."""
    digest = request_hash(body)
    for _ in range(3):
        async with sessions() as session:
            previous = await _existing(
                session, idempotency_key, digest, body.channel, body.external_ref
            )
            if previous is not None:
                await _ensure_started(session, client, settings, previous["id"])
                return previous, False
            try:
                answer, inp = await _persist(
                    session, settings, body, digest, idempotency_key, actor
                )
            except IntegrityError:
                # A concurrent request with the same key or external reference won: read its answer.
                await session.rollback()
                continue
        try:
            await start_order_workflow(client, inp, settings.task_queue)
        except Exception as err:  # Temporal down: the order is safe, a retry starts it
            raise OrderStartError(answer["id"], err) from err
        return answer, True
    raise RuntimeError("idempotency race did not settle")


async def _ensure_started(
    session: AsyncSession, client: Client, settings: Settings, order_id: str
) -> None:
    order = await session.get(Order, order_id)
    if order is None or order.status != OrderStatus.RECEIVED.value:
        return
    inp = workflow_input(
        order.id,
        order.customer_code,
        order.channel,
        order.total,
        settings,
        await repo.load_routing(session),
        order.allow_partial,
    )
    await start_order_workflow(client, inp, settings.task_queue)


async def _persist(
    session: AsyncSession,
    settings: Settings,
    body: OrderIn,
    digest: str,
    key: str | None,
    actor: str,
) -> tuple[dict[str, Any], OrderWorkflowInput]:
    q = await quote(session, body, datetime.now(UTC).date())
    if q.problems:
        session.add(
            RejectedAttempt(
                actor=actor,
                channel=body.channel,
                customer_code=body.customer_code,
                body=body.model_dump(mode="json"),
                problems=[p.model_dump() for p in q.problems],
            )
        )
        await session.commit()
        raise ProblemsError(q.problems, extra=q.availability)
    customer_row, priced, availability = q.customer, q.priced, q.availability
    assert customer_row is not None and priced is not None
    routing = (q.snapshot.routing, q.routing_version)
    ship_to = (
        body.ship_to.model_dump()
        if body.ship_to
        else {
            "line1": customer_row.address_line1,
            "city": customer_row.city,
            "postal_code": customer_row.postal_code,
            "country": customer_row.country,
        }
    )
    allow_partial = (
        customer_row.allow_partial_shipment
        if body.allow_partial_shipment is None
        else body.allow_partial_shipment
    )
    order_id = await repo.next_order_id(session)
    session.add(
        Order(
            id=order_id,
            customer_code=customer_row.code,
            channel=body.channel,
            external_ref=body.external_ref,
            status=OrderStatus.RECEIVED.value,
            subtotal=priced.subtotal,
            order_discount=priced.order_discount,
            total=priced.total,
            currency=settings.currency,
            ship_to=ship_to,
            requested_delivery_date=body.requested_delivery_date,
            special_instructions=body.special_instructions or None,
            price_rules_version=q.rules_label,
            created_by=actor,
            allow_partial=allow_partial,
        )
    )
    await session.flush()
    session.add_all(line_rows(order_id, priced))
    session.add(
        OrderEvent(
            order_id=order_id,
            step_key="received",
            status=OrderStatus.RECEIVED.value,
            actor=actor,
            detail=f"received from {body.channel}",
        )
    )
    answer = {
        "id": order_id,
        "status": OrderStatus.RECEIVED.value,
        "customer_code": customer_row.code,
        "channel": body.channel,
        "external_ref": body.external_ref,
        "subtotal": str(priced.subtotal),
        "order_discount": str(priced.order_discount),
        "total": str(priced.total),
        "currency": settings.currency,
        "lines": [
            {
                "line_no": p.line_no,
                "sku": p.sku,
                "quantity": p.quantity,
                "unit_price": str(p.unit_price),
                "line_total": str(p.line_total),
                "price_rule": p.price_rule,
                "override_deviation": None
                if p.override_deviation is None
                else str(p.override_deviation),
                **{k: v for k, v in availability[i].items() if k != "sku"},
            }
            for i, p in enumerate(priced.lines)
        ],
    }
    if key is not None:
        session.add(
            IdempotencyKey(key=key, request_hash=digest, order_id=order_id, response=answer)
        )
    await session.commit()
    inp = workflow_input(
        order_id, customer_row.code, body.channel, priced.total, settings, routing, allow_partial
    )
    return answer, inp
