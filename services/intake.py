"""Order entry: validate, price, persist and start, and nothing more (it is the hot path).

Shared by POST /orders, the signed webhooks, the console and the import activities, so every
channel passes the same rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from psycopg.errors import UniqueViolation
from sqlalchemy import Table, exists, func, insert, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from db import repo
from db.models import (
    Channel,
    IdempotencyKey,
    Order,
    OrderLine,
    RejectedAttempt,
    User,
)
from db.quotes import line_values, quote
from db.session import SessionFactory
from domain.approvals import RoutingRule, SlaPolicy
from domain.callers import Caller
from domain.orders import PIPELINE, OrderIn, OrderWorkflowInput
from domain.priority import PriorityDecision, PriorityFacts, PriorityRule, by_rules
from domain.problems import Problem, ProblemsError
from domain.search_attributes import CHANNEL, CUSTOMER, STATUS, TOTAL
from domain.status import OrderStatus
from services import priority
from services.config import Settings
from services.temporal import workflow_id

log = logging.getLogger("orderflow.api")


class OrderStartError(RuntimeError):
    """The order is stored but its workflow could not be started (Temporal unreachable).
    The message is for the caller: the cause (Temporal's own text) goes to the log only."""

    def __init__(self, order_id: str, cause: Exception):
        super().__init__(f"order {order_id} is stored but its pipeline could not start")
        self.order_id = order_id
        log.warning("order %s stored; its workflow did not start: %r", order_id, cause)


def request_hash(body: OrderIn) -> str:
    fields = body.model_dump(mode="json")
    if fields.get("allow_partial_shipment") is None:
        del fields["allow_partial_shipment"]  # added later: keeps older keys' hashes valid
    if fields.get("priority") is None:
        del fields["priority"]  # added later (issue 17), the same way
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
    lines: int = 0,
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
        lines=lines,
        warehouse_mode=settings.warehouse_mode,
        pick_sla_seconds=settings.pick_sla_seconds,
        pack_sla_seconds=settings.pack_sla_seconds,
        pipeline=PIPELINE,
    )


@dataclass(frozen=True)
class OrderCard:
    """What the Temporal UI shows of an order before anyone opens it (its user metadata)."""

    currency: str
    requested_delivery_date: date | None = None


# Temporal caps a summary at 400 bytes (details at 20,000): stay well under.
SUMMARY_BYTES = 300


def order_summary(inp: OrderWorkflowInput, card: OrderCard) -> str:
    """'SO-0000042 · C-GLD-1 · 1,234.50 CNY · web': the line in the workflow list."""
    total = f"{inp.total:,.2f} {card.currency}"
    text = f"{inp.order_id} · {inp.customer_code} · {total} · {inp.channel}"
    return text.encode()[:SUMMARY_BYTES].decode(errors="ignore")


def order_details(inp: OrderWorkflowInput, card: OrderCard) -> str:
    """The order as it started, in Temporal markdown (the live state is its current details)."""
    requested = card.requested_delivery_date
    return "\n".join(
        [
            f"**{inp.order_id}** for customer **{inp.customer_code}**, from channel {inp.channel}",
            f"- {inp.lines} line{'s' if inp.lines != 1 else ''}, "
            f"total {inp.total:,.2f} {card.currency}",
            f"- requested delivery: {requested.isoformat() if requested else 'none given'}",
            f"- partial shipment: {'allowed' if inp.allow_partial else 'no'}; "
            f"routing table v{inp.routing_version}",
        ]
    )


async def start_order_workflow(
    client: Client, inp: OrderWorkflowInput, task_queue: str, card: OrderCard
) -> None:
    """Start the order's workflow; starting it again (a replayed request) is harmless."""
    try:
        await client.start_workflow(
            "OrderWorkflow",
            inp,
            id=workflow_id(inp.order_id),
            task_queue=task_queue,
            static_summary=order_summary(inp, card),
            static_details=order_details(inp, card),
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


# The unique constraints that mean "a concurrent request with the same Idempotency-Key or
# the same (channel, external_ref) won": read its answer. Any other violation is the
# request's own fault and a 422 naming the rule.
UNIQUE_VIOLATION = UniqueViolation.sqlstate
RACE_CONSTRAINTS = frozenset({"pk_idempotency_keys", "uq_orders_channel_external_ref"})
# Rules the database enforces that a request can still break (the API's types keep most
# out): where to point the caller and what the rule says.
RULES: dict[str, tuple[list[str | int], str]] = {
    "total_non_negative": (["body", "lines"], "the order total must not be negative"),
    "quantity_positive": (["body", "lines"], "every line's quantity must be above 0"),
}


def _integrity_problem(err: IntegrityError) -> tuple[bool, Problem]:
    """(is it an idempotency race, the problem to report if not), without driver text."""
    diag = getattr(err.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or "unknown"
    table = getattr(diag, "table_name", None)
    race = getattr(err.orig, "sqlstate", None) == UNIQUE_VIOLATION and (
        constraint in RACE_CONSTRAINTS
    )
    loc, message = RULES.get(
        constraint,
        (["body"], f"the order breaks the rule {table + '.' if table else ''}{constraint}"),
    )
    return race, Problem(loc=loc, code=constraint, message=message)


# The order by (channel, external_ref) and the caller's Idempotency-Key, in ONE statement:
# one snapshot, so the two reads agree. An order and its key are committed together; read
# in two statements, a concurrent request could commit between them and this delivery be
# answered in the other shape (the race behind "concurrent deliveries do not always get the
# same answer"). A NULL ref or key matches nothing; each side matches at most one row (its
# unique constraint).
_EXISTING = text(
    """
SELECT o.id, o.status, o.customer_code, o.channel, o.total, k.request_hash, k.response
FROM (VALUES (1)) AS one (x)
LEFT JOIN orders o ON o.channel = :channel AND o.external_ref = :ref
LEFT JOIN idempotency_keys k ON k.scope = :scope AND k.key = :key
"""
)


async def _existing(
    session: AsyncSession,
    scope: str | None,
    key: str | None,
    digest: str,
    channel: str,
    external_ref: str | None,
) -> dict[str, Any] | None:
    if external_ref is None and key is None:
        return None
    row = (
        await session.execute(
            _EXISTING, {"channel": channel, "ref": external_ref, "scope": scope, "key": key}
        )
    ).one()
    if row.request_hash is not None:
        if row.request_hash != digest:
            raise ProblemsError(
                [
                    Problem(
                        loc=["header", "Idempotency-Key"],
                        code="idempotency_key_reused",
                        message="this Idempotency-Key was already used with a different body",
                    )
                ]
            )
        found: dict[str, Any] = row.response
        return found
    if row.id is not None:
        return {
            "id": row.id,
            "status": row.status,
            "duplicate_of_external_ref": True,
            "customer_code": row.customer_code,
            "channel": row.channel,
            "external_ref": external_ref,
            "total": str(row.total),
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
    scope: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create and start an order; returns (answer, created). Raises ProblemsError on 422.

    `scope` says whose `idempotency_key` it is (`Caller.scope`, or `channel:NAME` for a
    signed webhook): another caller's key is simply another key."""
    if idempotency_key is not None and not scope:
        raise ValueError("an Idempotency-Key needs the caller's scope")
    digest = request_hash(body)
    for _ in range(3):
        async with sessions() as session:
            previous = await _existing(
                session, scope, idempotency_key, digest, body.channel, body.external_ref
            )
            if previous is not None:
                try:  # a replay of an order stored during an outage starts it
                    await ensure_started(session, client, settings, previous["id"])
                except SQLAlchemyError:
                    raise  # PostgreSQL's outage, answered as such
                except Exception as err:  # Temporal down: the same answer as the first time
                    raise OrderStartError(previous["id"], err) from err
                return previous, False
            try:
                answer, inp = await _persist(
                    session, settings, body, digest, scope, idempotency_key, actor
                )
            except IntegrityError as err:
                await session.rollback()
                race, problem = _integrity_problem(err)
                if not race:
                    raise ProblemsError([problem]) from None
                # A concurrent request with the same key or external reference won: its
                # answer is committed now (the unique check waited for it); read it.
                continue
        card = OrderCard(answer["currency"], body.requested_delivery_date)
        try:
            await start_order_workflow(client, inp, settings.task_queue, card)
        except Exception as err:  # Temporal down: the order is safe, a retry starts it
            raise OrderStartError(answer["id"], err) from err
        return answer, True
    raise ProblemsError(
        [
            Problem(
                loc=["header", "Idempotency-Key"],
                code="idempotency_race",
                message="a concurrent request with this key or external_ref has not settled; "
                "send the same request again",
            )
        ],
        status_code=409,
    )


async def check_channel(session: AsyncSession, user: Caller, body: OrderIn) -> OrderIn:
    """Who may post for `body.channel` (and so take its external refs): a channel token only
    for its own channel (a body without `channel` means that one); a webhook channel only
    through its signed webhook, its own tokens or admin. 403 naming `channel` otherwise."""

    def refuse(message: str) -> ProblemsError:
        return ProblemsError(
            [Problem(loc=["body", "channel"], code="channel_not_allowed", message=message)],
            status_code=403,
        )

    if user.role == "channel":
        if user.channel is None:
            raise refuse(f"channel token {user.name} is bound to no channel; create a new one")
        if "channel" not in body.model_fields_set:
            return body.model_copy(update={"channel": user.channel})
        if body.channel != user.channel:
            raise refuse(f"this token posts for channel {user.channel} only, not {body.channel}")
        return body
    await check_webhook_channel(session, user, body.channel)
    return body


async def check_webhook_channel(session: AsyncSession, user: Caller, channel: str) -> None:
    """An integration's channel (a webhook channel, or one an active channel token is bound
    to) takes orders, and so external refs, only from its signed webhook, its own channel
    tokens or admin: 403 naming `channel` for anyone else (an import or a sales user posting
    as that channel, who could otherwise take its external refs first)."""
    if user.role in ("admin", "channel"):
        return
    webhook = await session.get(Channel, channel) is not None
    bound = webhook or bool(
        await session.scalar(select(exists().where(User.channel == channel, User.active)))
    )
    if bound:
        kind = "a webhook channel" if webhook else "an integration's channel"
        raise ProblemsError(
            [
                Problem(
                    loc=["body", "channel"],
                    code="channel_not_allowed",
                    message=f"{channel} is {kind}: its orders come through its "
                    "signed webhook or its own channel tokens",
                )
            ],
            status_code=403,
        )


async def ensure_started(
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
        await session.scalar(select(func.count()).where(OrderLine.order_id == order.id)) or 0,
    )
    card = OrderCard(order.currency, order.requested_delivery_date)
    await start_order_workflow(client, inp, settings.task_queue, card)


_LINES = cast(Table, OrderLine.__table__)
_KEYS = cast(Table, IdempotencyKey.__table__)


class PriorityRules:
    """The priority rules table, read again only when its version moved. The versions come
    with the ones quote() reads for every order (db/repo.py RuleCache): no query of its own,
    and an edit (services/priority.py replace_rules bumps the version) applies to the very
    next order."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._rules: list[PriorityRule] = []

    async def get(self, session: AsyncSession, versions: dict[str, int]) -> list[PriorityRule]:
        version = versions.get(priority.RULES_KIND, 0)
        if version != self._version:
            # Read after the version: rules newer than it are only read again next time.
            self._rules, _ = await priority.load_rules(session)
            self._version = version
        return self._rules


PRIORITY_RULES = PriorityRules()


async def _urgency(
    session: AsyncSession, body: OrderIn, tier: str, today: date, versions: dict[str, int]
) -> PriorityDecision:
    """services/priority.py for_new_order, with the rules from PRIORITY_RULES."""
    if body.priority is not None:
        return await priority.for_new_order(session, body, tier, today)  # reads nothing
    rules = await PRIORITY_RULES.get(session, versions)
    if not rules:
        return by_rules([], PriorityFacts(tier, None, today))
    facts = PriorityFacts(
        customer_tier=tier,
        requested_delivery_date=body.requested_delivery_date,
        today=today,
        product_classes=await priority.product_classes(session, (ln.sku for ln in body.lines)),
    )
    return by_rules(rules, facts)


async def _persist(
    session: AsyncSession,
    settings: Settings,
    body: OrderIn,
    digest: str,
    scope: str | None,
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
    urgency = await _urgency(
        session, body, customer_row.tier, datetime.now(UTC).date(), q.snapshot.versions
    )
    order_id = await repo.next_order_id(session)
    await repo.open_order(
        session,
        Order(
            id=order_id,
            customer_code=customer_row.code,
            channel=body.channel,
            external_ref=body.external_ref,
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
            priority=urgency.priority,
            priority_source=urgency.source,
        ),
        actor=actor,
        detail=f"received from {body.channel}",
    )
    if urgency.priority == "urgent":
        await repo.record_event(
            session,
            order_id,
            "priority:intake",
            status=None,
            kind="priority",
            actor=actor,
            detail=urgency.detail,
        )
    # Core inserts (no ORM objects, no flush of their own): the lines in one multi-row
    # INSERT, then the key.
    await session.execute(insert(_LINES).values(line_values(order_id, priced)))
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
        "priority": urgency.priority,
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
        await session.execute(
            insert(_KEYS).values(
                scope=scope, key=key, request_hash=digest, order_id=order_id, response=answer
            )
        )
    await session.commit()
    inp = workflow_input(
        order_id,
        customer_row.code,
        body.channel,
        priced.total,
        settings,
        routing,
        allow_partial,
        len(priced.lines),
    )
    return answer, inp
