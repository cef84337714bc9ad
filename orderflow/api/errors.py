"""One error shape: {"detail": ...}; a 422 lists every problem with loc, code and message."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from orderflow.domain.payloads import Problem


class ProblemsError(Exception):
    """Business validation failed: every problem, returned together as a 422."""

    def __init__(self, problems: list[Problem], status_code: int = 422, extra: Any = None):
        self.problems = problems
        self.status_code = status_code
        self.extra = extra


def _pydantic_code(err: dict[str, Any]) -> str:
    return str(err.get("type", "invalid"))


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {
                # FastAPI prefixes "body"/"query"/"path"; keep it so the field is unambiguous.
                "loc": list(err.get("loc", ())),
                "code": _pydantic_code(err),
                "message": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(ProblemsError)
    async def _problems(_: Request, exc: ProblemsError) -> JSONResponse:
        content: dict[str, Any] = {"detail": [p.model_dump() for p in exc.problems]}
        if exc.extra is not None:
            content["stock"] = exc.extra
        return JSONResponse(status_code=exc.status_code, content=content)
