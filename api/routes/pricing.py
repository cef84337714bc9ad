"""Pricing administration (admin, sales_manager) and the price preview."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field, model_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from api.deps import Caller, CurrentUser, SessionDep, require
from db import repo
from db.models import CustomerPrice, Promotion, QuantityBreak, TierPrice
from db.quotes import quote
from domain.base import Model
from domain.orders import OrderIn
from domain.types import Code40, Money, Percent, Quantity, SaneDate

router = APIRouter(tags=["pricing"])
Manager = Annotated[Caller, Depends(require("sales_manager"))]


class PriceIn(Model):
    unit_price: Money


class BreakIn(Model):
    sku: Code40
    min_qty: Quantity
    percent_off: Percent


class PromotionIn(Model):
    code: Code40
    kind: Literal["percent", "amount"]
    value: Money = Field(gt=0)
    sku: Code40 | None = None
    starts: SaneDate
    ends: SaneDate
    active: bool = True

    @model_validator(mode="after")
    def _sane(self) -> PromotionIn:
        if self.starts > self.ends:
            raise ValueError("starts must not be after ends")
        if self.kind == "percent" and self.value >= 100:
            raise ValueError("a percent promotion must be below 100")
        return self


async def _write(session: SessionDep, user: Caller, stmt: Any, what: str) -> int:
    """Apply one pricing change and bump the pricing version, atomically."""
    try:
        await session.execute(stmt)
        version = await repo.bump_version(session, "pricing", user.name)
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise HTTPException(422, f"{what}: unknown SKU, customer or tier") from err
    return version


@router.put("/price-lists/{tier}/{sku}")
async def set_tier_price(
    tier: Literal["standard", "silver", "gold"],
    sku: Code40,
    body: PriceIn,
    session: SessionDep,
    user: Manager,
) -> dict[str, Any]:
    stmt = insert(TierPrice).values(tier=tier, sku=sku, unit_price=body.unit_price)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tier", "sku"], set_={"unit_price": body.unit_price}
    )
    version = await _write(session, user, stmt, f"price list {tier}/{sku}")
    return {
        "tier": tier,
        "sku": sku,
        "unit_price": str(body.unit_price),
        "pricing_version": version,
    }


@router.delete("/price-lists/{tier}/{sku}")
async def delete_tier_price(
    tier: Literal["standard", "silver", "gold"], sku: Code40, session: SessionDep, user: Manager
) -> dict[str, Any]:
    stmt = delete(TierPrice).where(TierPrice.tier == tier, TierPrice.sku == sku)
    return {"pricing_version": await _write(session, user, stmt, "price list")}


@router.put("/customers/{code}/prices/{sku}")
async def set_customer_price(
    code: Code40, sku: Code40, body: PriceIn, session: SessionDep, user: Manager
) -> dict[str, Any]:
    stmt = insert(CustomerPrice).values(customer_code=code, sku=sku, unit_price=body.unit_price)
    stmt = stmt.on_conflict_do_update(
        index_elements=["customer_code", "sku"], set_={"unit_price": body.unit_price}
    )
    version = await _write(session, user, stmt, f"customer price {code}/{sku}")
    return {
        "customer_code": code,
        "sku": sku,
        "unit_price": str(body.unit_price),
        "pricing_version": version,
    }


@router.put("/quantity-breaks")
async def set_break(body: BreakIn, session: SessionDep, user: Manager) -> dict[str, Any]:
    stmt = insert(QuantityBreak).values(**body.model_dump())
    stmt = stmt.on_conflict_do_update(
        index_elements=["sku", "min_qty"], set_={"percent_off": body.percent_off}
    )
    return {
        **body.model_dump(mode="json"),
        "pricing_version": await _write(session, user, stmt, "quantity break"),
    }


@router.get("/quantity-breaks")
async def list_breaks(session: SessionDep, _: CurrentUser) -> list[BreakIn]:
    rows = await session.scalars(
        select(QuantityBreak).order_by(QuantityBreak.sku, QuantityBreak.min_qty)
    )
    return [BreakIn(sku=r.sku, min_qty=r.min_qty, percent_off=r.percent_off) for r in rows]


@router.put("/promotions/{code}")
async def set_promotion(
    code: Code40, body: PromotionIn, session: SessionDep, user: Manager
) -> dict[str, Any]:
    if body.code != code:
        raise HTTPException(422, "the code in the path and in the body differ")
    values = body.model_dump()
    stmt = insert(Promotion).values(**values)
    stmt = stmt.on_conflict_do_update(index_elements=["code"], set_=values)
    return {
        **body.model_dump(mode="json"),
        "pricing_version": await _write(session, user, stmt, f"promotion {code}"),
    }


@router.get("/promotions")
async def list_promotions(session: SessionDep, _: CurrentUser) -> list[PromotionIn]:
    rows = await session.scalars(select(Promotion).order_by(Promotion.starts, Promotion.code))
    # From the rows' attributes: `kind` is a plain string there, a Literal here.
    return [PromotionIn.model_validate(p, from_attributes=True) for p in rows]


@router.post("/pricing/preview")
async def preview(body: OrderIn, session: SessionDep, _: CurrentUser) -> dict[str, Any]:
    """Price a draft order exactly as POST /orders would, without creating anything."""
    q = await quote(session, body, datetime.now(UTC).date())
    await session.rollback()
    if q.problems:
        return {
            "valid": False,
            "problems": [p.model_dump() for p in q.problems],
            "stock": q.availability,
        }
    assert q.priced is not None
    return {
        "valid": True,
        "pricing_version": q.rules_version,
        "lines": [line.model_dump(mode="json") for line in q.priced.lines],
        "subtotal": str(q.priced.subtotal),
        "order_discount": str(q.priced.order_discount),
        "order_discount_rule": q.priced.order_discount_rule,
        "total": str(q.priced.total),
        "stock": q.availability,
    }
