"""Database errors caused by the data itself, in words a caller can act on.

The bounded input types (domain/types.py) stop bad values at the edge; this is the net
under them. A value PostgreSQL refuses (too long, out of range, a NUL byte, a broken CHECK)
will be refused again on every retry, so activities fail it as a non-retryable business
error and the API answers 422, in both cases without the driver's own text.
"""

from __future__ import annotations

from typing import Any

# SQLSTATE -> what went wrong (class 22 is "data exception").
_DATA_STATES = {
    "22001": "a text value is longer than its column allows",
    "22003": "a number is out of range for its column",
    "22007": "a date or time has an invalid format",
    "22008": "a date or time is out of range",
    "22021": "a text value holds a character the database cannot store",
    "22P02": "a value has the wrong form for its column",
    "22P05": "a text value holds a character the database cannot store",
    "22012": "a computation divided by zero",
}
CHECK_VIOLATION = "23514"
NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"


def _driver_error(err: BaseException) -> Any:
    """The DB-API exception under a SQLAlchemy one (or the error itself)."""
    return getattr(err, "orig", None) or err


def sqlstate(err: BaseException) -> str | None:
    return getattr(_driver_error(err), "sqlstate", None)


def _diag(err: BaseException, field: str) -> str | None:
    diag = getattr(_driver_error(err), "diag", None)
    return getattr(diag, field, None) if diag is not None else None


def describe_data_error(err: BaseException) -> str | None:
    """What is wrong with the data, if `err` is a database error caused by the data; None for
    every other error (connection, timeout, a unique key taken by a concurrent writer...)."""
    state = sqlstate(err)
    driver = _driver_error(err)
    if state is None:
        # psycopg refuses some values before sending them (a NUL byte in text).
        if type(driver).__name__ == "DataError":
            return "a text value holds a character the database cannot store (NUL)"
        return None
    if state in _DATA_STATES:
        return _DATA_STATES[state]
    if state.startswith("22"):
        return "a value does not fit its column"
    if state == CHECK_VIOLATION:
        return f"the data breaks the rule {_diag(err, 'constraint_name') or '(a CHECK)'}"
    if state == NOT_NULL_VIOLATION:
        return f"{_diag(err, 'column_name') or 'a value'} is required"
    return None
