"""Products (the catalogue)."""

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field, model_validator
from sqlalchemy import select

from api.deps import CurrentUser, SessionDep, require
from api.errors import ProblemsError, responses
from db import stock
from db.models import Product, ProductSubstitute
from domain.base import Model
from domain.problems import Problem
from domain.types import Code20, Code40, Money, Name200, Quantity

router = APIRouter(prefix="/products", tags=["products"], responses=responses(404, 409))


class ProductIn(Model):
    sku: Code40
    name: Name200
    unit_price: Money
    floor_price: Money
    pack_size: Quantity = 1
    min_order_qty: Quantity = 1
    make_to_order: bool = False
    bin_location: Code20 = "A-00-00"
    # A class priority rules can name (e.g. home-office; docs/warehouse-layout.md).
    product_class: Code40 | None = None
    # Offered, in this order, when this product is short at order entry.
    substitutes: list[Code40] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _floor_not_above_price(self) -> "ProductIn":
        if self.floor_price > self.unit_price:
            raise ValueError("floor_price must not exceed unit_price")
        if self.sku in self.substitutes:
            raise ValueError("substitutes must not name the product itself")
        if len(set(self.substitutes)) != len(self.substitutes):
            raise ValueError("substitutes must not name a product twice")
        return self


class ProductOut(ProductIn):
    active: bool = True


@router.post("", status_code=201, dependencies=[Depends(require())])
async def create_product(body: ProductIn, session: SessionDep) -> ProductOut:
    if await session.get(Product, body.sku) is not None:
        raise HTTPException(409, f"product {body.sku} already exists")
    known = set(await session.scalars(select(Product.sku).where(Product.sku.in_(body.substitutes))))
    unknown = [
        Problem(loc=["body", "substitutes", i], code="unknown_sku", message=f"no product {s!r}")
        for i, s in enumerate(body.substitutes)
        if s not in known
    ]
    if unknown:
        raise ProblemsError(unknown)
    session.add(Product(**body.model_dump(exclude={"substitutes"})))
    await session.flush()
    stock.open_row(session, body.sku)
    session.add_all(
        ProductSubstitute(sku=body.sku, position=i, substitute_sku=s)
        for i, s in enumerate(body.substitutes)
    )
    await session.commit()
    return ProductOut(**body.model_dump())


@router.get("/{sku}")
async def get_product(sku: Code40, session: SessionDep, _: CurrentUser) -> ProductOut:
    p = await session.get(Product, sku)
    if p is None:
        raise HTTPException(404, f"no product {sku}")
    return ProductOut(
        sku=p.sku,
        name=p.name,
        unit_price=p.unit_price,
        floor_price=p.floor_price,
        pack_size=p.pack_size,
        min_order_qty=p.min_order_qty,
        make_to_order=p.make_to_order,
        bin_location=p.bin_location,
        product_class=p.product_class,
        substitutes=await substitutes_of(session, sku),
        active=p.active,
    )


async def substitutes_of(session: SessionDep, sku: str) -> list[str]:
    """A product's substitutes, in the order they are offered."""
    rows = await session.scalars(
        select(ProductSubstitute.substitute_sku)
        .where(ProductSubstitute.sku == sku)
        .order_by(ProductSubstitute.position)
    )
    return list(rows)
