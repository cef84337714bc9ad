"""Dependencies as Annotated aliases: SessionDep, CurrentUser, TemporalDep, SettingsDep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from orderflow.api.auth import TokenCache
from orderflow.config import Settings
from orderflow.db.session import SessionFactory


@dataclass
class AppState:
    settings: Settings
    sessions: SessionFactory
    client: Client
    tokens: TokenCache


def get_state(request: Request) -> AppState:
    return request.app.state.orderflow  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def get_client(state: StateDep) -> Client:
    return state.client


TemporalDep = Annotated[Client, Depends(get_client)]


def get_app_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    name: str
    role: str


async def current_user(
    state: StateDep,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    found = await state.tokens.lookup(session, creds.credentials)
    if found is None:
        raise HTTPException(401, "invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Caller(name=found[0], role=found[1])


CurrentUser = Annotated[Caller, Depends(current_user)]


def require(*roles: str) -> Callable[[Caller], Caller]:
    """A dependency that lets only `roles` (and admin) through, else 403."""

    def check(user: CurrentUser) -> Caller:
        if user.role != "admin" and user.role not in roles:
            raise HTTPException(
                403, f"role {user.role} may not do this; needs one of: admin, {', '.join(roles)}"
            )
        return user

    return check
