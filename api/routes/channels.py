"""Channels: admin manages them; their signed webhooks deliver orders."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from sqlalchemy import select

from api.deps import SettingsDep, StateDep, require
from api.errors import ProblemsError, responses
from db.models import Channel
from domain.base import Model
from domain.channels import MappingError, check_signature, derive_secret, to_order
from services.intake import OrderStartError, create_order

router = APIRouter(prefix="/channels", tags=["channels"], responses=responses(404, 409))
ChannelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{1,39}$")]


class ChannelIn(Model):
    name: ChannelName
    mapping: Literal["generic", "webshop"] = "generic"
    default_customer_code: str | None = None


class ChannelOut(ChannelIn):
    active: bool = True


class ChannelCreated(ChannelOut):
    secret: str


def _key(settings: SettingsDep) -> str:
    if not settings.secret_key:
        raise HTTPException(503, "ORDERFLOW_SECRET_KEY is not set: channel webhooks are off")
    return settings.secret_key


@router.post("", status_code=201, dependencies=[Depends(require())])
async def create_channel(body: ChannelIn, state: StateDep, settings: SettingsDep) -> ChannelCreated:
    """Create a channel; its signing secret is shown once, here, and never again."""
    key = _key(settings)
    nonce = secrets.token_hex(16)
    async with state.sessions() as s:
        if await s.get(Channel, body.name) is not None:
            raise HTTPException(409, f"channel {body.name} exists")
        s.add(
            Channel(
                name=body.name,
                mapping=body.mapping,
                secret_nonce=nonce,
                default_customer_code=body.default_customer_code,
            )
        )
        await s.commit()
    return ChannelCreated(**body.model_dump(), secret=derive_secret(key, body.name, nonce))


@router.get("", dependencies=[Depends(require())])
async def list_channels(state: StateDep) -> list[ChannelOut]:
    async with state.sessions() as s:
        rows = (await s.scalars(select(Channel).order_by(Channel.name))).all()
    # From the rows' attributes: `mapping` is a plain string there, a Literal here.
    return [ChannelOut.model_validate(c, from_attributes=True) for c in rows]


KEY_MAX = 200  # idempotency_keys.key


def webhook_key(channel: str, external_id: str) -> str:
    """The dedup key of a webhook order: `channel:NAME:EXTERNAL_ID`, or with the external
    id's SHA-256 in its place when that would not fit the column (short keys stay as they
    always were, so keys stored before still match)."""
    key = f"channel:{channel}:{external_id}"
    if len(key) <= KEY_MAX:
        return key
    return f"channel:{channel}:sha256:{hashlib.sha256(external_id.encode()).hexdigest()}"


def _refuse_declared_size(request: Request, limit: int) -> None:
    """413 for a body whose Content-Length is over `limit`, before a byte of it is read."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise HTTPException(400, "Content-Length must be a number of bytes")
    if len(declared) > 18:  # over any limit (and int() of 5,000 digits raises)
        raise HTTPException(413, f"the body is over the limit of {limit} bytes")
    if int(declared) > limit:
        raise HTTPException(413, f"the body is {declared} bytes; the limit is {limit}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes: the cap holds when
    Content-Length is absent (chunked) or lies."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/{channel}/orders", responses=responses(413))
async def channel_order(
    channel: ChannelName,
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    timestamp: Annotated[str | None, Header(alias="X-Orderflow-Timestamp")] = None,
    signature: Annotated[str | None, Header(alias="X-Orderflow-Signature")] = None,
) -> JSONResponse:
    """An order in the channel's own shape, signed with the channel's secret. Delivered
    again (or concurrently), the same order gets the same answer and nothing new."""
    key = _key(settings)
    _refuse_declared_size(request, settings.webhook_max_bytes)
    async with state.sessions() as s:
        ch = await s.get(Channel, channel)
    if ch is None or not ch.active:
        raise HTTPException(404, f"no active channel {channel}")
    raw = await _read_body(request, settings.webhook_max_bytes)
    why = check_signature(
        derive_secret(key, ch.name, ch.secret_nonce), timestamp, signature, raw, time.time()
    )
    if why:
        raise HTTPException(401, why)
    try:
        payload: Any = json.loads(raw)
        order, external_id = to_order(ch.mapping, ch.name, payload, ch.default_customer_code)
    except (ValueError, RecursionError):
        # ValueError: not JSON, or not UTF-8; RecursionError: nested past any real order.
        raise HTTPException(422, "the body is not valid JSON") from None
    except MappingError as err:
        raise ProblemsError(err.problems) from err
    try:
        answer, created = await create_order(
            state.sessions,
            state.client,
            settings,
            order,
            # The channel's own order id is the idempotency key: every delivery of one
            # order gets the answer the first one got.
            idempotency_key=webhook_key(ch.name, external_id),
            actor=f"channel:{ch.name}",
            # The channel's own scope: no token holder can squat its dedup keys.
            scope=f"channel:{ch.name}",
        )
    except ProblemsError as err:
        if err.problems and err.problems[0].code == "idempotency_key_reused":
            raise HTTPException(
                409,
                f"{ch.name} order {external_id} was already received with other "
                "content; send changes as an amendment",
            ) from err
        raise
    except OrderStartError as err:
        raise HTTPException(503, f"{err}; deliver again to start it") from err
    return JSONResponse(status_code=201, content=answer)
