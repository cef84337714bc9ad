"""Bearer tokens: random secrets, stored only as SHA-256 hashes; bound, listed, revoked."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from domain.callers import ROLES, Caller

# The same rule as a webhook channel's name (api/routes/channels.py) and orders.channel.
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,39}$")
# The channels staff post into (POST /orders, imports, the console's order entry): no token
# is bound to them, or it would lock the staff out of their own channel (services/intake.py).
STAFF_CHANNELS = frozenset({"api", "import", "console"})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_binding(role: str, channel: str | None) -> None:
    """A channel token names its one channel; no other role carries one."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "channel" and not channel:
        raise ValueError("a channel token must be bound to its channel: give --channel NAME")
    if role != "channel" and channel is not None:
        raise ValueError(f"only a channel token is bound to a channel, not role {role}")
    if channel is not None and not CHANNEL_NAME.match(channel):
        raise ValueError(
            f"channel {channel!r} is not a channel name: 2 to 40 of a-z, 0-9, '-' and '_', "
            "starting with a letter or digit"
        )
    if channel in STAFF_CHANNELS:
        raise ValueError(
            f"channel {channel} is where staff post orders ({', '.join(sorted(STAFF_CHANNELS))}); "
            "bind the token to the integration's own channel"
        )


async def create_user(
    session: AsyncSession, name: str, role: str, channel: str | None = None
) -> str:
    """Create a user and return its token (shown once, never stored in clear)."""
    check_binding(role, channel)
    token = "of_" + secrets.token_urlsafe(32)
    session.add(User(name=name, role=role, channel=channel, token_hash=hash_token(token)))
    await session.flush()
    return token


async def ensure_token(session: AsyncSession, name: str, role: str, token: str) -> bool:
    """Make ORDERFLOW_BOOTSTRAP_TOKEN a valid token and retire every other bootstrap token
    (a new value replaces the old one). A token once revoked stays revoked: answers False
    then, so the caller can say to choose a new value."""
    digest = hash_token(token)
    await session.execute(
        insert(User)
        .values(name=name, role=role, token_hash=digest, active=True, bootstrap=True)
        .on_conflict_do_nothing(constraint="uq_users_token_hash")
    )
    await session.execute(
        update(User)
        .where(User.bootstrap, User.active, User.token_hash != digest)
        .values(active=False, revoked_at=func.now())
    )
    return bool(await session.scalar(select(User.active).where(User.token_hash == digest)))


async def find_users(session: AsyncSession, name_or_id: str) -> list[User]:
    """The active users a CLI argument names: an id, or every user of that name."""
    q = select(User).where(User.active).order_by(User.id)
    if name_or_id.isdigit():
        return list((await session.scalars(q.where(User.id == int(name_or_id)))).all())
    return list((await session.scalars(q.where(User.name == name_or_id))).all())


async def revoke_user(session: AsyncSession, user_id: int) -> User | None:
    """Revoke a token for good (the row stays, for the record). None if there is no such
    user; revoking twice keeps the first time."""
    user = await session.get(User, user_id)
    if user is None:
        return None
    if user.active:
        now = await session.scalar(select(func.now()))  # the database's clock, like created_at
        user.active, user.revoked_at = False, now
        await session.flush()
    return user


@dataclass
class _Entry:
    expires: float
    caller: Caller | None


# How long a request waits for another's lookup of the same token before reading itself.
LEADER_WAIT_S = 2.0


class TokenCache:
    """A short-lived cache of token -> caller: intake must not hit the users table on every
    request. A revocation made through this process's API drops the user's entries at once
    (`forget`); other processes see it when their entry expires, within `ttl` seconds.
    A lookup that began before a revocation is answered but not cached: it may have read
    the row just before the revocation committed."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000):
        self.ttl = ttl
        self.size = size
        self._items: dict[str, _Entry] = {}
        self._revocations = 0  # bumped by every forget()
        # Lookups in flight, by token digest: (answered, caller) once done.
        self._pending: dict[str, asyncio.Future[tuple[bool, Caller | None]]] = {}

    async def resolve(
        self, token: str, sessions: Callable[[], AbstractAsyncContextManager[AsyncSession]]
    ) -> Caller | None:
        """The token's caller: from the cache, else read once in a session of its own however
        many requests ask at the same moment (a cold cache under a burst of requests would
        otherwise open a connection for each). A revocation meanwhile (`forget`) makes later
        askers read again."""
        digest = hash_token(token)
        hit = self._items.get(digest)
        if hit is not None and hit.expires > time.monotonic():
            return hit.caller
        pending = self._pending.get(digest)
        # Wait for a lookup in flight on this event loop only (a future of another loop,
        # left by one that was closed mid-lookup, would never wake this one), and not for
        # long: past LEADER_WAIT_S this request reads for itself.
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            try:
                answered, caller = await asyncio.wait_for(asyncio.shield(pending), LEADER_WAIT_S)
            except TimeoutError:
                answered, caller = False, None
            if answered:
                return caller
        pending = asyncio.get_running_loop().create_future()
        self._pending[digest] = pending
        try:
            async with sessions() as session:
                caller = await self.lookup(session, token)
        except BaseException:
            pending.set_result((False, None))  # the others read for themselves
            raise
        finally:
            if self._pending.get(digest) is pending:
                del self._pending[digest]
        pending.set_result((True, caller))
        return caller

    async def lookup(self, session: AsyncSession, token: str) -> Caller | None:
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._items.get(digest)
        if hit is not None and hit.expires > now:
            return hit.caller
        generation = self._revocations
        row = (
            await session.execute(
                select(User.id, User.name, User.role, User.channel).where(
                    User.token_hash == digest, User.active
                )
            )
        ).first()
        caller = Caller(id=row[0], name=row[1], role=row[2], channel=row[3]) if row else None
        if generation != self._revocations:
            return caller  # a revocation happened meanwhile: the row read may be stale
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[digest] = _Entry(now + self.ttl, caller)
        return caller

    def forget(self, user_id: int) -> None:
        """Drop a (revoked) user's entries: its next request reads the users table."""
        self._revocations += 1
        self._pending.clear()  # a lookup in flight may have read the row before: not shared
        for digest, entry in list(self._items.items()):
            if entry.caller is not None and entry.caller.id == user_id:
                del self._items[digest]
