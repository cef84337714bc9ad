"""Users and their tokens, managed by admin (the CLI's `orderflow users create` does the same)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from orderflow.api.auth import create_user
from orderflow.api.deps import SessionDep, require
from orderflow.domain.payloads import Model, NonEmpty, Role

router = APIRouter(prefix="/users", tags=["users"])


class UserIn(Model):
    name: NonEmpty
    role: Role


class UserOut(UserIn):
    token: Annotated[str, "shown once; only its hash is stored"]


@router.post("", status_code=201, dependencies=[Depends(require())])
async def post_user(body: UserIn, session: SessionDep) -> UserOut:
    try:
        token = await create_user(session, body.name, body.role)
    except ValueError as err:
        raise HTTPException(422, str(err)) from err
    await session.commit()
    return UserOut(name=body.name, role=body.role, token=token)
