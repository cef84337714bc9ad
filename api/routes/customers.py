"""Customers, with their live credit exposure."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import Field

from api.deps import Caller, CurrentUser, SessionDep, require
from api.errors import responses
from db import repo
from db.models import Customer
from domain.base import Model, Money
from domain.credit import exposure
from domain.orders import Address
from domain.types import Code40, Name200
from domain.types import Money as Amount

router = APIRouter(prefix="/customers", tags=["customers"], responses=responses(404, 409))


class CustomerIn(Model):
    code: Code40
    name: Name200
    tier: Literal["standard", "silver", "gold"] = "standard"
    # Set only by a credit controller or admin (PUT /customers/{code}/credit-limit after);
    # a customer entered by sales starts at 0, so its first order goes to credit control.
    credit_limit: Amount = Decimal("0.00")
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    address: Address
    status: Literal["active", "on_hold"] = "active"
    # Ship what is in stock now and the rest later; an order can say otherwise.
    allow_partial_shipment: bool = False


class CustomerOut(CustomerIn):
    exposure: Money
    available_credit: Money


async def _out(session: SessionDep, c: Customer) -> CustomerOut:
    facts = await repo.load_credit(session, c.code, datetime.now(UTC).date())
    total = exposure(facts, Decimal(0))
    # Validated from a dict: tier and status are plain strings in the row, Literals here.
    return CustomerOut.model_validate(
        {
            "code": c.code,
            "name": c.name,
            "tier": c.tier,
            "credit_limit": c.credit_limit,
            "payment_terms_days": c.payment_terms_days,
            "address": Address(
                line1=c.address_line1, city=c.city, postal_code=c.postal_code, country=c.country
            ),
            "status": c.status,
            "allow_partial_shipment": c.allow_partial_shipment,
            "exposure": total,
            "available_credit": c.credit_limit - total,
        }
    )


CREDIT_SETTERS = frozenset({"admin", "credit_controller"})


def _credit_limit_refused(user: Caller) -> HTTPException:
    return HTTPException(
        403,
        [
            {
                "loc": ["body", "credit_limit"],
                "code": "credit_limit_not_yours",
                "message": f"credit_limit is set by credit_controller or admin, not {user.role}",
            }
        ],
    )


@router.post("", status_code=201, dependencies=[Depends(require("sales", "credit_controller"))])
async def create_customer(body: CustomerIn, session: SessionDep, user: CurrentUser) -> CustomerOut:
    if body.credit_limit != 0 and user.role not in CREDIT_SETTERS:
        raise _credit_limit_refused(user)
    if await session.get(Customer, body.code) is not None:
        raise HTTPException(409, f"customer {body.code} already exists")
    c = Customer(
        code=body.code,
        name=body.name,
        tier=body.tier,
        credit_limit=body.credit_limit,
        payment_terms_days=body.payment_terms_days,
        address_line1=body.address.line1,
        city=body.address.city,
        postal_code=body.address.postal_code,
        country=body.address.country.upper(),
        status=body.status,
        allow_partial_shipment=body.allow_partial_shipment,
    )
    session.add(c)
    await session.commit()
    return await _out(session, c)


@router.get("/{code}")
async def get_customer(code: Code40, session: SessionDep, _: CurrentUser) -> CustomerOut:
    c = await session.get(Customer, code)
    if c is None:
        raise HTTPException(404, f"no customer {code}")
    return await _out(session, c)


class CreditLimitIn(Model):
    credit_limit: Amount


@router.put("/{code}/credit-limit", dependencies=[Depends(require("credit_controller"))])
async def set_credit_limit(code: Code40, body: CreditLimitIn, session: SessionDep) -> CustomerOut:
    """Set a customer's credit limit (credit controllers and admin only)."""
    c = await session.get(Customer, code)
    if c is None:
        raise HTTPException(404, f"no customer {code}")
    c.credit_limit = body.credit_limit
    await session.commit()
    return await _out(session, c)
