"""Users and their tokens, managed by admin (the CLI's `orderflow users` does the same)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import Field, StringConstraints
from sqlalchemy import select

from api.auth import check_binding, create_user, hash_token, revoke_user
from api.deps import SessionDep, StateDep, require
from api.errors import ProblemsError, responses
from db.models import User
from domain.base import Model, NonEmpty
from domain.callers import Role
from domain.problems import Problem

router = APIRouter(prefix="/users", tags=["users"], responses=responses(404))

ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$")]
UserId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class UserIn(Model):
    name: Annotated[NonEmpty, Field(max_length=100)]
    role: Role
    channel: Annotated[
        ChannelName | None,
        Field(description="required for role channel (its one channel), refused for others"),
    ] = None


class UserCreated(UserIn):
    id: int
    token: Annotated[str, Field(description="shown once; only its hash is stored")]


class UserOut(Model):
    id: int
    name: str
    role: str
    channel: str | None
    active: bool
    bootstrap: bool
    created_at: datetime
    revoked_at: datetime | None


@router.post("", status_code=201, dependencies=[Depends(require())])
async def post_user(body: UserIn, session: SessionDep) -> UserCreated:
    """Create a user; its token is in this answer and nowhere else, ever."""
    try:
        check_binding(body.role, body.channel)
    except ValueError as err:
        raise ProblemsError(
            [Problem(loc=["body", "channel"], code="channel_binding", message=str(err))]
        ) from err
    token = await create_user(session, body.name, body.role, body.channel)
    user_id = await session.scalar(select(User.id).where(User.token_hash == hash_token(token)))
    await session.commit()
    assert user_id is not None
    return UserCreated(**body.model_dump(), id=user_id, token=token)


@router.get("", dependencies=[Depends(require())])
async def list_users(session: SessionDep) -> list[UserOut]:
    """Every user, active or revoked (never a token or its hash)."""
    rows = (await session.scalars(select(User).order_by(User.id))).all()
    return [UserOut.model_validate(u, from_attributes=True) for u in rows]


@router.post("/{user_id}/revoke", dependencies=[Depends(require())])
async def revoke(user_id: UserId, session: SessionDep, state: StateDep) -> UserOut:
    """Revoke a token: refused at once by this API process, by the others within the token
    cache's lifetime (30 s)."""
    user = await revoke_user(session, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    await session.commit()
    state.tokens.forget(user_id)
    return UserOut.model_validate(user, from_attributes=True)
