"""Helpers for tests: the running stack handle, factories and polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.client import Client

from db.session import SessionFactory
from services.config import Settings

# The channel the `channel` role's token of a test stack is bound to: an integration's own
# channel, never a staff channel such as "api" (auth.STAFF_CHANNELS). Its orders come from
# that token (or admin); sales users post into "api".
TOKEN_CHANNEL = "test-shop"


@dataclass
class Stack:
    http: httpx.AsyncClient
    tokens: dict[str, str]
    sessions: SessionFactory
    client: Client
    settings: Settings

    def auth(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def post(self, path: str, body: Any, role: str = "admin", **kw: Any) -> httpx.Response:
        headers = {**self.auth(role), **kw.pop("headers", {})}
        return await self.http.post(path, json=body, headers=headers, **kw)

    async def get(self, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth(role), **kw)

    async def put(self, path: str, body: Any, role: str = "admin") -> httpx.Response:
        return await self.http.put(path, json=body, headers=self.auth(role))

    async def customer(
        self,
        tier: str = "standard",
        limit: str = "1000000.00",
        status: str = "active",
        terms: int = 30,
    ) -> str:
        code = f"C-{uuid.uuid4().hex[:8].upper()}"
        r = await self.post(
            "/customers",
            {
                "code": code,
                "name": f"Test {code}",
                "tier": tier,
                "credit_limit": limit,
                "payment_terms_days": terms,
                "status": status,
                "address": {
                    "line1": "1 Test St",
                    "city": "Shanghai",
                    "postal_code": "200000",
                    "country": "CN",
                },
            },
        )
        assert r.status_code == 201, r.text
        return code

    async def product(
        self,
        price: str = "10.00",
        floor: str = "8.00",
        stock: int = 1000,
        pack: int = 1,
        moq: int = 1,
        bin_location: str = "A-01-01",
    ) -> str:
        sku = f"P-{uuid.uuid4().hex[:8].upper()}"
        r = await self.post(
            "/products",
            {
                "sku": sku,
                "name": f"Product {sku}",
                "unit_price": price,
                "floor_price": floor,
                "pack_size": pack,
                "min_order_qty": moq,
                "bin_location": bin_location,
            },
        )
        assert r.status_code == 201, r.text
        r = await self.put(f"/inventory/{sku}", {"on_hand": stock})
        assert r.status_code == 200, r.text
        return sku

    async def order(
        self,
        customer: str,
        lines: list[tuple[str, int]],
        role: str = "sales",
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "customer_code": customer,
            "channel": TOKEN_CHANNEL if role == "channel" else "api",
            "lines": [{"sku": s, "quantity": q} for s, q in lines],
            **extra,
        }
        headers = {"Idempotency-Key": key} if key else {}
        return await self.post("/orders", body, role=role, headers=headers)

    async def wait_status(self, order_id: str, *statuses: str, within: float = 30) -> dict:
        """Poll GET /orders/{id} until its status is one of `statuses`."""
        deadline = time.monotonic() + within
        last: dict = {}
        while time.monotonic() < deadline:
            r = await self.get(f"/orders/{order_id}")
            assert r.status_code == 200, r.text
            last = r.json()
            if last["status"] in statuses:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{order_id} stayed {last.get('status')}, wanted {statuses}: {last.get('timeline')}"
        )

    async def count(self, model: Any, *where: Any) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(model).where(*where)))


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    """Poll `check` until it holds; fail naming `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


def money(value: str) -> Decimal:
    return Decimal(value)


async def assert_books_balance(stack: Stack, *skus: str) -> None:
    """Stock and money add up: on hand + shipped = received, reserved = the active
    reservations, and every receivable belongs to an invoice with the same amount."""
    from db.models import Invoice, Receivable, Reservation, Stock, StockMovement
    from db.stock import ADJUSTING_KINDS

    async with stack.sessions() as s:
        for sku in skus:
            stock = await s.get(Stock, sku)
            assert stock is not None
            held = await s.scalar(
                select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
                    Reservation.sku == sku, Reservation.status == "active"
                )
            )
            # Audited adjustments (counts, a short pick's write-off) are in the ledger.
            adjusted = await s.scalar(
                select(func.coalesce(func.sum(StockMovement.quantity), 0)).where(
                    StockMovement.sku == sku, StockMovement.kind.in_(ADJUSTING_KINDS)
                )
            )
            assert stock.on_hand + stock.shipped == stock.received + adjusted, sku
            assert stock.reserved == held, sku
            assert 0 <= stock.reserved <= stock.on_hand, sku
        orphans = await s.scalar(
            select(func.count())
            .select_from(Receivable)
            .outerjoin(Invoice, Invoice.number == Receivable.invoice_number)
            .where((Invoice.number.is_(None)) | (Invoice.amount != Receivable.amount))
        )
        assert orphans == 0
        # And the stock ledger (db/reconcile.py): every unit of these SKUs accounted for.
        from db import reconcile

        off = [p.detail for p in (await reconcile.check(s, skus)).problems if p.sku]
        assert off == [], off
