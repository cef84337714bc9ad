"""Tokens: revoked at once by the API that revokes them, within the cache's lifetime by the
others; a new bootstrap token retires the old one."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import func, select

from api.auth import TokenCache, create_user, ensure_token, revoke_user
from db.models import User
from db.session import SessionFactory
from tests.utils import Stack


async def test_revoked_through_the_api_the_token_is_refused_at_once(api_stack: Stack):
    stack = api_stack
    r = await stack.post("/users", {"name": "leaver", "role": "sales"})
    assert r.status_code == 201, r.text
    user_id, headers = r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await stack.http.get("/orders", headers=headers)).status_code == 200  # now cached

    revoked = await stack.post(f"/users/{user_id}/revoke", {})
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    r = await stack.http.get("/orders", headers=headers)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    listed = {u["id"]: u for u in (await stack.get("/users")).json()}
    assert listed[user_id]["active"] is False
    assert (await stack.post("/users/99999999/revoke", {})).status_code == 404
    assert (await stack.post(f"/users/{user_id}/revoke", {}, role="ops")).status_code == 403


async def _poll_refused(cache: TokenCache, sessions: SessionFactory, token: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 5:
        async with sessions() as s:
            if await cache.lookup(s, token) is None:
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("a token revoked elsewhere was still accepted after 5 s")


async def test_revoked_elsewhere_the_token_is_refused_within_the_cache_lifetime(
    sessions: SessionFactory,
):
    """Another process (the CLI, another API replica) revoked it: this cache learns at expiry."""
    cache = TokenCache(ttl=0.5)
    async with sessions() as s:
        token = await create_user(s, f"elsewhere-{uuid.uuid4().hex[:6]}", "ops")
        await s.commit()
        caller = await cache.lookup(s, token)
    assert caller is not None and caller.role == "ops"
    async with sessions() as s:
        await revoke_user(s, caller.id)
        await s.commit()
    assert await _poll_refused(cache, sessions, token) <= 0.5 + 0.5


async def test_a_new_bootstrap_token_retires_the_old_one(sessions: SessionFactory):
    old, new = f"boot-{uuid.uuid4().hex}", f"boot-{uuid.uuid4().hex}"
    cache = TokenCache(ttl=0)
    async with sessions() as s:
        assert await ensure_token(s, "bootstrap", "admin", old)
        assert await ensure_token(s, "bootstrap", "admin", old), "idempotent"
        await s.commit()
        assert (await cache.lookup(s, old)) is not None
    async with sessions() as s:
        assert await ensure_token(s, "bootstrap", "admin", new)
        await s.commit()
        assert (await cache.lookup(s, old)) is None
        assert (await cache.lookup(s, new)) is not None
        active = await s.scalar(
            select(func.count()).select_from(User).where(User.bootstrap, User.active)
        )
        assert active == 1
    async with sessions() as s:
        # Going back to a retired value does not bring it back.
        assert not await ensure_token(s, "bootstrap", "admin", old)
        await s.commit()
        assert (await cache.lookup(s, old)) is None
        assert (await cache.lookup(s, new)) is None, "the value now configured is `old`"
