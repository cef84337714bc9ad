"""What every database-backed activity class is built with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.config import Settings
from orderflow.db.session import SessionFactory
from orderflow.metrics import observe

# The transaction a combined step runs its parts in (see activities/fulfil.py).
_current: ContextVar[AsyncSession | None] = ContextVar("orderflow_tx", default=None)


class DbActivities:
    """Base for activity classes: a session factory and the settings, wired by the worker."""

    def __init__(self, sessions: SessionFactory, settings: Settings):
        self.sessions = sessions
        self.settings = settings

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed on success, rolled back on any error. Status changes
        are counted and logged only once committed, so a retried step never counts twice.
        Inside another step's transaction it joins that one: several steps, one commit."""
        outer = _current.get()
        if outer is not None:
            yield outer
            return
        async with self.sessions() as session:
            token = _current.set(session)
            try:
                async with session.begin():
                    yield session
            finally:
                _current.reset(token)
            for moved in session.info.pop("moved", []):
                observe(moved)
