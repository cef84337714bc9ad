"""The one business error: every problem of a request, collected, each with loc, code and
message. Raised by order entry (services/) for the API and the importers alike; the API
answers it with its status code (api/errors.py)."""

from __future__ import annotations

from typing import Any

from domain.base import Model


class ProblemsError(Exception):
    """Business validation failed: every problem, returned together as a 422."""

    def __init__(self, problems: list[Problem], status_code: int = 422, extra: Any = None):
        self.problems = problems
        self.status_code = status_code
        self.extra = extra


class Problem(Model):
    """One thing wrong with an order: where, a stable code, and words for a person."""

    loc: list[str | int]
    code: str
    message: str
