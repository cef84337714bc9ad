"""503 during outages: PostgreSQL or Temporal down, frozen or unreachable.

Any request that meets an outage answers 503 with `Retry-After` and a one-line reason that
names the part that is down (never the exception text: that is in the API's log). Nothing
is cached: the next request tries again, so the API recovers by itself when the part does.
"""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger("orderflow.api")

RETRY_AFTER_S = 5
# Temporal answers these when it is down or overloaded; others (NOT_FOUND, a failed
# precondition) are about the request and are handled by the routes.
TEMPORAL_OUTAGE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.CANCELLED,
}
POSTGRES_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,  # no pooled connection came free in time
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionError,
)


def unavailable(part: str, reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"{part} is unavailable: {reason}; retry in {RETRY_AFTER_S} s"},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def temporal_outage(err: BaseException) -> bool:
    """An error from the Temporal client that means the server cannot be reached."""
    if isinstance(err, RPCError):  # temporal_client.TemporalUnreachable included
        return err.status in TEMPORAL_OUTAGE
    # The SDK's own lazy client that could not connect yet raises a plain RuntimeError.
    return isinstance(err, RuntimeError) and "client connect" in str(err).lower()


def install(app: FastAPI) -> None:
    """Exception handlers for connection errors and timeouts, and Retry-After on every 503."""

    async def postgres_down(request: Request, err: Exception) -> JSONResponse:
        log.warning("%s %s: PostgreSQL unavailable: %r", request.method, request.url.path, err)
        reason = (
            "no database connection came free in time"
            if isinstance(err, sa_exc.TimeoutError)
            else "the database is not answering"
        )
        return unavailable("PostgreSQL", reason)

    for kind in POSTGRES_DOWN:
        app.add_exception_handler(kind, postgres_down)

    async def temporal_down(request: Request, err: Exception) -> JSONResponse:
        if not temporal_outage(err):
            raise err
        log.warning("%s %s: Temporal unavailable: %r", request.method, request.url.path, err)
        return unavailable("Temporal", "the workflow service is not answering")

    app.add_exception_handler(RPCError, temporal_down)
    # A client connected without temporal_client.connect: its failed connect is a bare
    # RuntimeError; any other RuntimeError is re-raised (a 500, as before).
    app.add_exception_handler(RuntimeError, temporal_down)
    app.add_middleware(RetryAfterOn503)


class RetryAfterOn503:
    """Every 503 (a route's own included, e.g. an order stored but not started) tells the
    client when to try again."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_retry_after)
