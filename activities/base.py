"""What every database-backed activity class is built with."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.exceptions import ApplicationError

from db.data_errors import describe_data_error
from db.repo import IllegalTransition
from db.session import SessionFactory
from services.config import Settings
from services.metrics import observe

log = logging.getLogger("orderflow.activities")

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
        Inside another step's transaction it joins that one: several steps, one commit.
        A value PostgreSQL refuses fails the step for good (`InvalidData`): a retry would
        send the same value again."""
        outer = _current.get()
        if outer is not None:
            yield outer
            return
        async with self.sessions() as session:
            token = _current.set(session)
            try:
                async with session.begin():
                    yield session
            except DBAPIError as err:
                invalid = _invalid_data(err)
                if invalid is None:
                    raise
                # The driver's text stays in the worker's log, not in the order's history.
                log.warning("%s: %s", invalid.message, err.orig)
                raise invalid from None
            except IllegalTransition as err:
                # The transition table says no: the same step would be refused again.
                raise ApplicationError(
                    str(err), type="IllegalTransition", non_retryable=True
                ) from None
            finally:
                _current.reset(token)
            for moved in session.info.pop("moved", []):
                observe(moved)


def _invalid_data(err: DBAPIError) -> ApplicationError | None:
    """A non-retryable business error for a database error caused by the data, else None."""
    what = describe_data_error(err)
    if what is None:
        return None
    return ApplicationError(
        f"the database refused the data: {what}", type="InvalidData", non_retryable=True
    )
