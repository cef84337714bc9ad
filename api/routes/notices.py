"""Customer notices: where a customer (or a channel) hears about its orders, and what it
was told (services/notices.py sends them; docs/notices.md)."""

from __future__ import annotations

import secrets
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, SettingsDep, require
from api.errors import responses
from db.models import Channel, Customer, CustomerNotice, Order
from domain.base import Model
from domain.notices import ChannelNoticesIn, ContactIn, ContactOut
from domain.types import Code40
from services.notices import customer_secret

router = APIRouter(tags=["notices"], responses=responses(404))


def _key(settings: SettingsDep) -> str:
    if not settings.secret_key:
        raise HTTPException(503, "ORDERFLOW_SECRET_KEY is not set: webhooks cannot be signed")
    return settings.secret_key


def _contact(c: Customer, secret: str | None = None) -> ContactOut:
    return ContactOut(
        customer_code=c.code,
        email=c.notice_email,
        webhook_url=c.notice_webhook_url,
        secret=secret,
    )


@router.put("/customers/{code}/contact", dependencies=[Depends(require("sales"))])
async def set_contact(
    code: Code40, body: ContactIn, session: SessionDep, settings: SettingsDep
) -> ContactOut:
    """Set where the customer hears about its orders (e-mail and/or webhook; null clears).
    The webhook's signing secret is answered once: when it is made or rotated."""
    c = await session.get(Customer, code, with_for_update=True)
    if c is None:
        raise HTTPException(404, f"no customer {code}")
    secret = None
    if body.webhook_url and (body.rotate_secret or not c.notice_secret_nonce):
        c.notice_secret_nonce = secrets.token_hex(16)
        secret = customer_secret(_key(settings), code, c.notice_secret_nonce)
    c.notice_email = body.email
    c.notice_webhook_url = body.webhook_url
    await session.commit()
    return _contact(c, secret)


@router.get("/customers/{code}/contact")
async def get_contact(code: Code40, session: SessionDep, _: CurrentUser) -> ContactOut:
    c = await session.get(Customer, code)
    if c is None:
        raise HTTPException(404, f"no customer {code}")
    return _contact(c)


class ChannelNoticesOut(Model):
    channel: str
    webhook_url: str | None


@router.put("/channels/{channel}/notices", dependencies=[Depends(require())])
async def set_channel_notices(
    channel: Code40, body: ChannelNoticesIn, session: SessionDep, settings: SettingsDep
) -> ChannelNoticesOut:
    """Where a channel hears about the orders it placed: signed with the channel's own
    secret (the one it signs its orders with)."""
    _key(settings)
    ch = await session.get(Channel, channel)
    if ch is None:
        raise HTTPException(404, f"no channel {channel}")
    ch.notice_webhook_url = body.webhook_url
    await session.commit()
    return ChannelNoticesOut(channel=ch.name, webhook_url=ch.notice_webhook_url)


class NoticeOut(Model):
    event: str
    event_key: str
    receiver: str
    address: str
    status: str
    attempts: int
    subject: str | None
    body: str | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@router.get("/orders/{order_id}/notices")
async def order_notices(order_id: Code40, session: SessionDep, _: CurrentUser) -> list[NoticeOut]:
    """What the order's customer and channel were told (or are about to be), oldest first."""
    if await session.get(Order, order_id) is None:
        raise HTTPException(404, f"no order {order_id}")
    rows = (
        await session.scalars(
            select(CustomerNotice)
            .where(CustomerNotice.order_id == order_id)
            .order_by(CustomerNotice.id)
        )
    ).all()
    return [NoticeOut.model_validate(r, from_attributes=True) for r in rows]
