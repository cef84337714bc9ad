"""Engines and session factories (async for the API and activities, sync for migrations).

Every wait on PostgreSQL is bounded, so an outage is an error in seconds rather than a hang:

- connecting: `connect_timeout` (a server that accepts TCP but never answers the start-up);
- a query: the server's `statement_timeout`, and a client-side deadline a little longer for
  a server that does not answer at all (frozen, a network partition: no packet ever comes
  back, so neither TCP nor the server would end the wait). A connection that missed its
  deadline is closed, so the pool drops it instead of handing it out again;
- the pool: `pool_timeout` for a free connection, `pool_pre_ping` so a connection left over
  from before a restart is replaced on checkout.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.abc import RV, PQGen
from psycopg.rows import TupleRow
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]

log = logging.getLogger("orderflow.db")

CONNECT_TIMEOUT_S = 2  # libpq's minimum
POOL_TIMEOUT_S = 3.0
# Activities may run heavier statements than a request; the API passes a shorter limit.
STATEMENT_TIMEOUT_S = 30.0
API_STATEMENT_TIMEOUT_S = 3.0
# How much longer than the statement timeout the client waits before it gives up on the
# server itself (the server cancels a slow statement first; only a dead one overruns).
DEADLINE_MARGIN_S = 1.0


class DatabaseUnavailable(psycopg.OperationalError):
    """PostgreSQL did not answer within the client's deadline."""


class GuardedConnection(psycopg.AsyncConnection[TupleRow]):
    """A psycopg connection whose every wait for the server has a deadline."""

    deadline_s: float = STATEMENT_TIMEOUT_S + DEADLINE_MARGIN_S

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's signature
    ) -> RV:
        limit = self.deadline_s if timeout is None else timeout
        try:
            return await super().wait(gen, interval, limit)
        except pg_errors._WaitTimeout:
            # The connection is in an unknown state mid-protocol: close it, so SQLAlchemy
            # sees a closed connection and invalidates it (it is never pooled again).
            self.pgconn.finish()
            raise DatabaseUnavailable(
                f"PostgreSQL did not answer within {self.deadline_s:.0f} s"
            ) from None


def _conninfo(url: str, statement_timeout_s: float) -> dict[str, Any]:
    u = make_url(url)
    info: dict[str, Any] = {
        "host": u.host or "localhost",
        "port": u.port or 5432,
        "user": u.username,
        "password": u.password,
        "dbname": u.database,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}",
    }
    info.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return {k: v for k, v in info.items() if v is not None}


def make_engine(
    url: str,
    pool_size: int = 10,
    max_overflow: int = 20,
    *,
    statement_timeout_s: float = STATEMENT_TIMEOUT_S,
    pool_timeout_s: float = POOL_TIMEOUT_S,
) -> AsyncEngine:
    """An async engine on psycopg 3 whose every wait is bounded (see the module docstring)."""
    params = _conninfo(url, statement_timeout_s)
    deadline = statement_timeout_s + DEADLINE_MARGIN_S

    async def connect() -> GuardedConnection:
        conn = await GuardedConnection.connect(**params)
        conn.deadline_s = deadline
        return conn

    return create_async_engine(
        url,
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_timeout=pool_timeout_s,
    )


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
