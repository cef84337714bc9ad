"""api/auth.py TokenCache: a request never waits on a lookup it cannot be woken by."""

from __future__ import annotations

import asyncio

from api.auth import TokenCache, hash_token
from db.session import SessionFactory


async def test_a_lookup_left_by_a_closed_event_loop_is_not_waited_for(sessions: SessionFactory):
    cache = TokenCache()
    other = asyncio.new_event_loop()
    # What a loop closed mid-lookup leaves behind: a future nobody will ever resolve.
    cache._pending[hash_token("no-such-token")] = other.create_future()
    other.close()
    assert await asyncio.wait_for(cache.resolve("no-such-token", sessions), 10) is None
    assert not cache._pending  # the request's own lookup replaced it and was cleared


async def test_concurrent_requests_for_one_token_share_one_answer(sessions: SessionFactory):
    cache = TokenCache()
    answers = await asyncio.gather(*(cache.resolve("no-such-token", sessions) for _ in range(8)))
    assert answers == [None] * 8
    assert not cache._pending
