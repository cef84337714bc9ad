"""Dependencies as Annotated aliases: SessionDep, CurrentUser, TemporalDep, SettingsDep.

Every dependency is `async def`, even one that awaits nothing: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop per request for a getter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api import access
from api.auth import TokenCache
from db.session import SessionFactory
from domain.callers import Caller as Caller  # the routes import it from here
from services.config import Settings


@dataclass
class AppState:
    settings: Settings
    sessions: SessionFactory
    client: Client
    tokens: TokenCache


async def get_state(request: Request) -> AppState:
    return request.app.state.orderflow


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_client(state: StateDep) -> Client:
    return state.client


TemporalDep = Annotated[Client, Depends(get_client)]


async def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

bearer = HTTPBearer(auto_error=False)


def _token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


async def _authenticate(request: Request, state: AppState) -> Caller:
    """The caller of this request (401 without a valid token); looked up once per request,
    in a session of its own only when the token cache does not know it (most requests need
    no database for it)."""
    found: Caller | None = getattr(request.state, "caller", None)
    if found is not None:
        return found
    token = _token(request)
    if token is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    found = await state.tokens.resolve(token, state.sessions)
    if found is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    request.state.caller = found
    return found


async def authorize(request: Request, state: StateDep) -> None:
    """Every route's rule from the one table (orderflow/api/access.py): 401 without a
    valid token, 403 for a role the rule does not name or a route without a rule."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    rule = access.rule_for(request.method, path)
    if rule is None:
        raise HTTPException(
            403, f"{request.method} {path} has no access rule in orderflow/api/access.py"
        )
    if rule in (access.PUBLIC, access.SIGNED):
        return
    caller = await _authenticate(request, state)
    if caller.role not in rule:
        allowed = ", ".join(sorted(rule))
        raise HTTPException(403, f"role {caller.role} may not do this; needs one of: {allowed}")


async def current_user(
    request: Request,
    state: StateDep,
    # Declared for the OpenAPI document (the security scheme); the header is read above.
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    return await _authenticate(request, state)


CurrentUser = Annotated[Caller, Depends(current_user)]


def require(*roles: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets only `roles` (and admin) through, else 403. The table in
    orderflow/api/access.py already applies to every route; this states it at the route."""

    async def check(user: CurrentUser) -> Caller:
        if user.role != "admin" and user.role not in roles:
            raise HTTPException(
                403, f"role {user.role} may not do this; needs one of: admin, {', '.join(roles)}"
            )
        return user

    return check


def channel_scope(user: Caller) -> str | None:
    """The one channel whose orders this caller may see and touch; None: every channel.
    A channel token made before tokens were bound carries no channel and gets nothing."""
    if user.role != "channel":
        return None
    if user.channel is None:
        raise HTTPException(
            403,
            f"channel token {user.name} is bound to no channel: revoke it and create one "
            "with `orderflow users create NAME --role channel --channel CH`",
        )
    return user.channel
