"""One error shape: {"detail": ...}; a 422 lists every problem with loc, code and message."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError, IntegrityError

from db import data_errors
from domain.problems import Problem
from domain.problems import ProblemsError as ProblemsError  # answered by install() below

log = logging.getLogger("orderflow.api")


class ErrorBody(BaseModel):
    """Every error answer: one sentence, or every problem with loc, code and message."""

    model_config = ConfigDict(extra="allow")  # a 422 at intake adds the stock it found
    detail: str | list[Problem]


_WHY = {
    400: "the body could not be read as JSON",
    401: "no valid bearer token",
    403: "the caller's role may not do this",
    404: "no such resource",
    409: "the resource's state does not allow this now",
    413: "the request is too large",
    422: "a value breaks a rule: every problem, each naming the field and the rule",
    503: "PostgreSQL or Temporal is unavailable; retry after Retry-After seconds",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these error codes, all with the one error shape."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


# What any route can answer (declared app-wide); routers add 404, 409 where they apply.
COMMON_RESPONSES = responses(400, 401, 403, 422, 503)


def _pydantic_code(err: dict[str, Any]) -> str:
    return str(err.get("type", "invalid"))


def install(app: FastAPI) -> None:
    from api import outages

    outages.install(app)  # 503 + Retry-After while PostgreSQL or Temporal is down

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

    @app.exception_handler(DataError)
    @app.exception_handler(IntegrityError)
    async def _data_refused(request: Request, exc: Exception) -> JSONResponse:
        """The net under the bounded types: never a 500, never the driver's text."""
        log.warning("%s %s: database refused: %s", request.method, request.url.path, exc)
        what = data_errors.describe_data_error(exc)
        state = data_errors.sqlstate(exc)
        if what is None and state == data_errors.UNIQUE_VIOLATION:
            return JSONResponse(
                status_code=409, content={"detail": "conflicts with data written meanwhile"}
            )
        if what is None and state == data_errors.FOREIGN_KEY_VIOLATION:
            what = "it refers to something that does not exist"
        problem = Problem(
            loc=["body"],
            code="invalid_data",
            message=f"the database refused the data: {what or 'a value does not fit'}",
        )
        return JSONResponse(status_code=422, content={"detail": [problem.model_dump()]})

    @app.exception_handler(ProblemsError)
    async def _problems(_: Request, exc: ProblemsError) -> JSONResponse:
        content: dict[str, Any] = {"detail": [p.model_dump() for p in exc.problems]}
        if exc.extra is not None:
            content["stock"] = exc.extra
        return JSONResponse(status_code=exc.status_code, content=content)
