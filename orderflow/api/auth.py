"""Bearer tokens: random secrets, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.db.models import User
from orderflow.domain.payloads import ROLES


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_user(session: AsyncSession, name: str, role: str) -> str:
    """Create a user and return its token (shown once, never stored in clear)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    token = "of_" + secrets.token_urlsafe(32)
    session.add(User(name=name, role=role, token_hash=hash_token(token)))
    await session.flush()
    return token


async def ensure_token(session: AsyncSession, name: str, role: str, token: str) -> None:
    """Make a given token valid (ORDERFLOW_BOOTSTRAP_TOKEN); idempotent."""
    await session.execute(
        insert(User)
        .values(name=name, role=role, token_hash=hash_token(token), active=True)
        .on_conflict_do_nothing(constraint="uq_users_token_hash")
    )


class TokenCache:
    """A short-lived cache of token -> (name, role): intake must not hit the users table
    on every request. Revocation takes effect within `ttl` seconds."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000):
        self.ttl = ttl
        self.size = size
        self._items: dict[str, tuple[float, tuple[str, str] | None]] = {}

    async def lookup(self, session: AsyncSession, token: str) -> tuple[str, str] | None:
        digest = hash_token(token)
        now = time.monotonic()
        hit = self._items.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = (
            await session.execute(
                select(User.name, User.role).where(User.token_hash == digest, User.active)
            )
        ).first()
        value = (row[0], row[1]) if row else None
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[digest] = (now + self.ttl, value)
        return value
