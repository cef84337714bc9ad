"""Scoped callers: idempotency keys per caller, channel tokens bound to one channel,
credit limits for credit control only, database rules that are not races."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import TokenCache, create_user, hash_token, revoke_user
from api.errors import ProblemsError
from db.models import IdempotencyKey, Order, User
from domain.channels import sign
from domain.orders import OrderIn, OrderLineIn
from services.intake import _integrity_problem, create_order
from tests.utils import TOKEN_CHANNEL, Stack


async def _token(stack: Stack, role: str, channel: str | None = None) -> dict[str, str]:
    async with stack.sessions() as s:
        token = await create_user(s, f"{role}-{uuid.uuid4().hex[:6]}", role, channel=channel)
        await s.commit()
    return {"Authorization": f"Bearer {token}"}


def _body(customer: str, sku: str, qty: int = 1, **extra: object) -> dict:
    return {"customer_code": customer, "lines": [{"sku": sku, "quantity": qty}], **extra}


async def _webhook_channel(stack: Stack) -> tuple[str, str]:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    r = await stack.post("/channels", {"name": name, "mapping": "generic"})
    assert r.status_code == 201, r.text
    return name, r.json()["secret"]


async def _deliver(
    stack: Stack, channel: str, secret: str, payload: dict[str, Any]
) -> httpx.Response:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Orderflow-Timestamp": stamp,
        "X-Orderflow-Signature": sign(secret, stamp, body),
    }
    return await stack.http.post(f"/channels/{channel}/orders", content=body, headers=headers)


async def test_another_callers_idempotency_key_is_simply_another_key(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    key = f"k-{uuid.uuid4().hex[:8]}"
    mine = await stack.order(customer, [(sku, 1)], key=key)
    assert mine.status_code == 201, mine.text
    again = await stack.order(customer, [(sku, 1)], key=key)
    assert again.json() == mine.json(), "the same caller, key and body: the same answer"

    # A channel token replaying the sales user's key (same body) gets its own order.
    theirs = await stack.order(customer, [(sku, 1)], key=key, role="channel")
    assert theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"]
    # Another sales user, the same key and another body: not "key reused", a new order.
    other_sales = await _token(stack, "sales")
    r = await stack.http.post(
        "/orders",
        json=_body(customer, sku, 2, channel="api"),
        headers={**other_sales, "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] not in {mine.json()["id"], theirs.json()["id"]}
    assert await stack.count(IdempotencyKey, IdempotencyKey.key == key) == 3


async def test_nobody_squats_a_webhooks_dedup_key_or_its_external_refs(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    channel, secret = await _webhook_channel(stack)

    # The key a webhook delivery of W-1 uses, sent first by a sales user: only theirs.
    squat = await stack.order(customer, [(sku, 5)], key=f"channel:{channel}:W-1")
    assert squat.status_code == 201, squat.text
    # The webhook's external ref, claimed through POST /orders: refused, naming the field.
    for role in ("sales", "channel"):
        r = await stack.post(
            "/orders", _body(customer, sku, channel=channel, external_ref="W-1"), role=role
        )
        assert r.status_code == 403, (role, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "channel"]
    assert await stack.count(Order, Order.channel == channel) == 0

    delivered = await _deliver(
        stack, channel, secret, {"external_id": "W-1", **_body(customer, sku, 1)}
    )
    assert delivered.status_code == 201, delivered.text
    assert delivered.json()["id"] != squat.json()["id"]
    assert delivered.json()["channel"] == channel
    assert delivered.json()["lines"][0]["quantity"] == 1

    # A token bound to that channel may post for it (and only for it).
    bound = await _token(stack, "channel", channel)
    r = await stack.http.post(
        "/orders", json=_body(customer, sku, external_ref="W-2"), headers=bound
    )
    assert r.status_code == 201 and r.json()["channel"] == channel, r.text
    r = await stack.http.post("/orders", json=_body(customer, sku, channel="api"), headers=bound)
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "channel"]


async def test_a_channel_token_sees_and_touches_only_its_channels_orders(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    phone = await stack.order(customer, [(sku, 1)], channel="phone")  # a sales order
    assert phone.status_code == 201, phone.text
    ours = await stack.order(customer, [(sku, 1)], role="channel")  # the token's channel
    assert ours.status_code == 201, ours.text
    other_id, our_id = phone.json()["id"], ours.json()["id"]
    done = await stack.wait_status(other_id, "completed")
    await stack.wait_status(our_id, "completed")

    assert (await stack.get(f"/orders/{other_id}", role="channel")).status_code == 404
    assert (await stack.get(f"/orders/{our_id}", role="channel")).status_code == 200
    listed = (await stack.get("/orders", role="channel", params={"limit": 500})).json()
    ids = {o["id"] for o in listed["items"]}
    assert our_id in ids and other_id not in ids
    assert {o["channel"] for o in listed["items"]} == {TOKEN_CHANNEL}
    by_filter = await stack.get("/orders", role="channel", params={"channel": "phone"})
    assert by_filter.json()["items"] == []
    patch = await stack.http.patch(
        f"/orders/{other_id}",
        json={"requested_delivery_date": "2030-01-01"},
        headers=stack.auth("channel"),
    )
    assert patch.status_code == 404
    cancel = await stack.post(f"/orders/{other_id}/cancel", {"reason": "x"}, role="channel")
    assert cancel.status_code == 404
    tracking = done["shipments"][0]["tracking_number"]
    event = await stack.post(
        f"/shipments/{tracking}/events", {"status": "delivered"}, role="channel"
    )
    assert event.status_code == 404
    # The same calls by staff still work (ops reports the carrier's event).
    event = await stack.post(f"/shipments/{tracking}/events", {"status": "delivered"}, role="ops")
    assert event.status_code == 200, event.text


async def test_a_channel_token_made_before_binding_is_refused_everything_scoped(
    api_stack: Stack,
):
    stack = api_stack
    async with stack.sessions() as s:
        # As migration 0006 leaves an old token: role channel, no channel.
        token = await create_user(s, "legacy-shop", "sales")
        await s.execute(update(User).where(User.name == "legacy-shop").values(role="channel"))
        await s.commit()
    headers = {"Authorization": f"Bearer {token}"}
    r = await stack.http.get("/orders", headers=headers)
    assert r.status_code == 403 and "bound to no channel" in r.json()["detail"]


async def test_users_api_binds_channel_tokens(api_stack: Stack):
    stack = api_stack
    r = await stack.post("/users", {"name": "shop-bot", "role": "channel"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "channel"]
    r = await stack.post("/users", {"name": "sam", "role": "sales", "channel": "api"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "channel"]
    for staff in ("api", "import", "console"):  # staff post there: no token takes it over
        r = await stack.post("/users", {"name": "bot", "role": "channel", "channel": staff})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "channel"]
        assert "where staff post orders" in r.json()["detail"][0]["message"]
    r = await stack.post("/users", {"name": "shop-bot", "role": "channel", "channel": "web"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["channel"] == "web" and created["token"].startswith("of_")
    listed = (await stack.get("/users")).json()
    row = next(u for u in listed if u["id"] == created["id"])
    assert row["channel"] == "web" and row["active"] is True
    assert all("token" not in u and "token_hash" not in u for u in listed)
    assert (await stack.get("/users", role="sales")).status_code == 403


async def test_credit_limit_is_set_by_credit_control_only(api_stack: Stack):
    stack = api_stack
    code = f"C-{uuid.uuid4().hex[:8].upper()}"
    customer = {
        "code": code,
        "name": "Credit test",
        "address": {"line1": "1 St", "city": "Suzhou", "postal_code": "215000", "country": "CN"},
    }
    r = await stack.post("/customers", {**customer, "credit_limit": "50000.00"}, role="sales")
    assert r.status_code == 403, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "credit_limit"]
    r = await stack.post("/customers", customer, role="sales")
    assert r.status_code == 201, r.text
    assert r.json()["credit_limit"] == "0.00"
    path = f"/customers/{code}/credit-limit"
    assert (await stack.put(path, {"credit_limit": "50000.00"}, role="sales")).status_code == 403
    r = await stack.put(path, {"credit_limit": "50000.00"}, role="credit_controller")
    assert r.status_code == 200, r.text
    assert Decimal(r.json()["credit_limit"]) == Decimal("50000.00")
    r = await stack.post(
        "/customers",
        {**customer, "code": code + "B", "credit_limit": "10.00"},
        role="credit_controller",
    )
    assert r.status_code == 201, r.text


async def test_a_check_violation_is_a_422_naming_the_rule_not_a_race(api_stack: Stack):
    """A negative requested price (let through the types on purpose here) makes the total
    negative: the CHECK is reported at once, not retried as an idempotency race."""
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="0.00")
    body = OrderIn.model_construct(
        customer_code=customer,
        channel="api",
        external_ref=None,
        lines=[OrderLineIn.model_construct(sku=sku, quantity=1, unit_price=Decimal("-50.00"))],
        ship_to=None,
        requested_delivery_date=None,
        special_instructions=None,
        allow_partial_shipment=None,
    )
    with pytest.raises(ProblemsError) as caught:
        await create_order(
            stack.sessions,
            stack.client,
            stack.settings,
            body,
            idempotency_key="neg-1",
            actor="test",
            scope="user:0",
        )
    (problem,) = caught.value.problems
    assert caught.value.status_code == 422
    assert problem.code == "total_non_negative" and problem.loc == ["body", "lines"]
    assert "psycopg" not in problem.message and "violates" not in problem.message


async def test_only_unique_violations_on_the_key_or_external_ref_are_races(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    r = await stack.order(customer, [(sku, 1)], key="race-1", external_ref="R-1")
    order_id = r.json()["id"]
    scope = f"user:{uuid.uuid4().int % 10**9}"  # another caller's scope: the key is free
    for attempt in range(2):
        async with stack.sessions() as s:
            s.add(
                IdempotencyKey(
                    scope=scope, key="race-1", request_hash="0" * 64, order_id=order_id, response={}
                )
            )
            if attempt == 0:
                await s.commit()
                continue
            with pytest.raises(IntegrityError) as err:
                await s.commit()
    race, _ = _integrity_problem(err.value)
    assert race
    async with stack.sessions() as s:
        row = await s.get(Order, order_id)
        assert row is not None
        row.total = Decimal("-1")
        with pytest.raises(IntegrityError) as err:
            await s.commit()
    race, problem = _integrity_problem(err.value)
    assert not race and problem.code == "total_non_negative"


async def test_an_import_cannot_post_as_a_webhook_channel(api_stack: Stack):
    from tests.api.test_imports import row, upload, xlsx

    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    channel, _ = await _webhook_channel(stack)
    content = xlsx([row("W-9", customer, sku, 1)])
    r = await upload(stack, content, channel=channel)
    assert r.status_code == 403, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "channel"]
    assert await stack.count(Order, Order.channel == channel) == 0
    # The same sheet under the sales channel of its own is fine.
    r = await upload(stack, content, channel=f"imp-{uuid.uuid4().hex[:6]}")
    assert r.status_code in (201, 202), r.text  # taken (202: still being worked through)


async def test_a_token_bound_channel_without_a_webhook_takes_no_orders_from_staff(
    api_stack: Stack,
):
    """A channel token bound to `edi-…` (no Channel row): a sales user can take none of
    its external refs, neither through POST /orders nor an import; admin still may."""
    from tests.api.test_imports import row, upload, xlsx

    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    channel = f"edi-{uuid.uuid4().hex[:6]}"
    bound = await _token(stack, "channel", channel)
    r = await stack.post(
        "/orders", _body(customer, sku, channel=channel, external_ref="E-1"), role="sales"
    )
    assert r.status_code == 403, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "channel"]
    assert "integration's channel" in r.json()["detail"][0]["message"]
    r = await upload(stack, xlsx([row("E-2", customer, sku, 1)]), channel=channel)
    assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "channel"]
    assert await stack.count(Order, Order.channel == channel) == 0

    r = await stack.http.post(
        "/orders", json=_body(customer, sku, external_ref="E-1"), headers=bound
    )
    assert r.status_code == 201 and r.json()["channel"] == channel, r.text
    r = await stack.post(
        "/orders", _body(customer, sku, channel=channel, external_ref="E-3"), role="admin"
    )
    assert r.status_code == 201, r.text


async def test_a_rotated_channel_token_keeps_its_channels_keys(api_stack: Stack):
    """Keys of a channel token are its channel's: a retry sent with the new token after a
    rotation gets the order the old token's request made, not a second one."""
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    channel = f"rot-{uuid.uuid4().hex[:6]}"
    old = await _token(stack, "channel", channel)
    key = f"k-{uuid.uuid4().hex[:8]}"
    first = await stack.http.post(
        "/orders", json=_body(customer, sku), headers={**old, "Idempotency-Key": key}
    )
    assert first.status_code == 201, first.text
    async with stack.sessions() as s:
        (row,) = (await s.execute(select(User.id).where(User.channel == channel))).all()
        old_id = row[0]
    assert (await stack.post(f"/users/{old_id}/revoke", {})).status_code == 200
    new = await _token(stack, "channel", channel)
    again = await stack.http.post(
        "/orders", json=_body(customer, sku), headers={**new, "Idempotency-Key": key}
    )
    assert again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    assert await stack.count(Order, Order.channel == channel) == 1
    async with stack.sessions() as s:
        scopes = (
            await s.scalars(select(IdempotencyKey.scope).where(IdempotencyKey.key == key))
        ).all()
    assert scopes == [f"token-channel:{channel}"]
    # A staff user's keys stay that user's own.
    sales = (await stack.order(customer, [(sku, 1)], key=key)).json()
    assert sales["id"] != first.json()["id"]


class _RevokedWhileReading:
    """A real session whose read of the users table is followed, before the lookup goes
    on, by `then()`: the revocation committing right after the row was read."""

    def __init__(self, session: AsyncSession, then: Callable[[], Awaitable[None]]):
        self.session, self.then = session, then

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.session.execute(*args, **kwargs)
        await self.then()
        return result


async def test_a_lookup_that_read_the_row_before_a_revoke_is_not_cached(api_stack: Stack):
    stack = api_stack
    async with stack.sessions() as s:
        token = await create_user(s, f"rev-{uuid.uuid4().hex[:6]}", "sales")
        await s.commit()
        user_id = await s.scalar(select(User.id).where(User.token_hash == hash_token(token)))
    cache = TokenCache()

    async def revoke() -> None:
        async with stack.sessions() as s:
            await revoke_user(s, user_id)
            await s.commit()
        cache.forget(user_id)

    async with stack.sessions() as s:
        # A stand-in session: only the execute() the lookup calls.
        caller = await cache.lookup(_RevokedWhileReading(s, revoke), token)  # type: ignore[arg-type]  # duck-typed session
    assert caller is not None and caller.id == user_id  # it read the row before the revoke
    async with stack.sessions() as s:
        assert await cache.lookup(s, token) is None  # not served from the cache for 30 s


async def test_a_webhook_order_with_a_long_external_id_is_deduplicated(api_stack: Stack):
    stack = api_stack
    customer = await stack.customer()
    sku = await stack.product()
    channel, secret = await _webhook_channel(stack)
    external_id = "L" * 195  # `channel:NAME:` + this is past the key column's 200
    payload = {"external_id": external_id, **_body(customer, sku, 1)}
    first = await _deliver(stack, channel, secret, payload)
    assert first.status_code == 201, first.text
    again = await _deliver(stack, channel, secret, payload)
    assert again.status_code == 201 and again.json() == first.json(), again.text
    assert await stack.count(Order, Order.channel == channel) == 1
    # A short id keeps the key it always had.
    short = await _deliver(stack, channel, secret, {**payload, "external_id": "S-1"})
    assert short.status_code == 201, short.text
    assert await stack.count(IdempotencyKey, IdempotencyKey.key == f"channel:{channel}:S-1") == 1


async def test_imports_are_visible_to_their_uploader_not_to_a_namesake(stack: Stack):
    from tests.api.test_imports import row, xlsx

    customer = await stack.customer()
    sku = await stack.product()
    name = f"sam-{uuid.uuid4().hex[:6]}"
    async with stack.sessions() as s:
        mine = await create_user(s, name, "sales")
        namesake = await create_user(s, name, "sales")
        await s.commit()
    r = await stack.http.post(
        "/imports",
        files={"file": ("mine.xlsx", xlsx([row("N-1", customer, sku, 1)]))},
        data={"channel": f"imp-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {mine}"},
    )
    assert r.status_code in (201, 202), r.text
    import_id = r.json()["id"]
    for path in (f"/imports/{import_id}", f"/imports/{import_id}/result.xlsx"):
        ok = await stack.http.get(path, headers={"Authorization": f"Bearer {mine}"})
        assert ok.status_code == 200, (path, ok.text)
        other = await stack.http.get(path, headers={"Authorization": f"Bearer {namesake}"})
        assert other.status_code == 404, (path, other.text)
        assert (await stack.get(path, role="admin")).status_code == 200
