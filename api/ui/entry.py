"""Order entry for sales reps (/ui/orders/new): a customer and lines checked as they are
typed, a quick mode for pasted lines, a product search, substitutes for a short product.

Nothing here knows a business rule. A draft is checked by the `OrderIn` model and
`quote()` (orderflow/db/quotes.py), exactly as POST /orders and the price preview check it,
and created by `create_order` (services/intake.py) with the caller's scope, as
POST /orders creates it. This module only reads the form, finds what was typed (a customer
by code or name, a SKU in any case), and lays the answers out for a person.

The page is a plain form that works without JavaScript (each button is a round trip);
static/entry.js, when it runs, posts the same form to /ui/orders/new/check as you type and
puts the answer's HTML fragments in place.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from api.deps import Caller, CurrentUser, SessionDep, StateDep
from api.errors import ProblemsError
from api.routes.customers import CustomerOut, get_customer
from api.ui.web import ConsoleRoute, render, templates
from db import repo
from db.models import Customer, Product, ProductSubstitute
from db.quotes import quote
from domain.orders import OrderIn, PricedLine
from domain.problems import Problem
from services.intake import OrderStartError, check_channel, create_order
from services.metrics import INTAKE_SECONDS, ORDERS_REFUSED, ORDERS_STARTED

router = APIRouter(prefix="/ui/orders/new", route_class=ConsoleRoute, include_in_schema=False)

CHANNEL = "console"  # what orders entered here record as their channel
MAX_LINES = 500  # OrderIn's limit
MIN_ROWS = 5  # line rows on a fresh form
BLANK_ROWS = 2  # empty rows kept below the filled ones
MATCHES = 8  # customers or products a lookup lists
MAX_TYPED = 200  # characters of a lookup that are searched
KEY = re.compile(r"^[0-9a-f]{32}$")
PASTE_SPLIT = re.compile(r"[\s,;:|]+")
PASTE_NOISE = frozenset({"x", "×", "*", "qty", "pcs", "pc", "units", "unit", "ea", "each"})
SHIP_TO = ("line1", "city", "postal_code", "country")
WHERE = {
    "customer_code": "Customer",
    "lines": "Lines",
    "requested_delivery_date": "Delivery date",
    "ship_to": "Ship-to",
    "external_ref": "Customer reference",
    "special_instructions": "Instructions",
    "allow_partial_shipment": "Partial shipment",
    "header": "Form",
    "body": "Order",
}


@dataclass
class Row:
    """One line row of the form, as typed, and what is known about it."""

    sku: str
    qty: str
    index: int = 0  # its position among the form's rows (JavaScript finds it by this)
    product: Product | None = None
    available: int | None = None
    next_receipt: date | None = None
    price: PricedLine | None = None
    substitutes: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def blank(self) -> bool:
        return not self.sku.strip() and not self.qty.strip()

    @property
    def quantity(self) -> int | None:
        q = self.qty.strip()
        return int(q) if q.isdigit() else None

    @property
    def short(self) -> int:
        if self.available is None or self.quantity is None:
            return 0
        return max(self.quantity - self.available, 0)


@dataclass
class Draft:
    """The form as sent: nothing checked yet."""

    customer: str = ""
    rows: list[Row] = field(default_factory=list)
    external_ref: str = ""
    requested_delivery_date: str = ""
    special_instructions: str = ""
    allow_partial_shipment: str = ""
    ship_to: dict[str, str] = field(default_factory=dict)
    paste: str = ""
    find: str = ""
    key: str = ""


@dataclass
class Assessment:
    """The draft checked: the customer found, each row's facts and every problem."""

    draft: Draft
    customer: CustomerOut | None = None
    matches: list[Customer] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    body: OrderIn | None = None  # the order POST /orders would receive, when it parses
    totals: dict[str, Any] | None = None

    @property
    def valid(self) -> bool:
        return not self.problems and self.body is not None


def _text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _typed(value: str) -> str:
    """What a lookup searches for: one line of printable text (nothing PostgreSQL refuses)."""
    return "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_TYPED]


def read_form(form: FormData) -> Draft:
    """The draft in a posted form; over-long values are cut, the rules judge the rest."""
    skus = [v for v in form.getlist("sku") if isinstance(v, str)]
    qtys = [v for v in form.getlist("qty") if isinstance(v, str)]
    qtys += [""] * (len(skus) - len(qtys))
    rows = [
        Row(sku=s[:100], qty=q[:20], index=i)
        for i, (s, q) in enumerate(zip(skus, qtys, strict=False))
    ][: MAX_LINES + 50]
    return Draft(
        customer=_text(form, "customer", MAX_TYPED),
        rows=rows,
        external_ref=_text(form, "external_ref", 300),
        requested_delivery_date=_text(form, "requested_delivery_date", 30),
        special_instructions=_text(form, "special_instructions", 3000),
        allow_partial_shipment=_text(form, "allow_partial_shipment", 10),
        ship_to={k: _text(form, f"ship_{k}", 300) for k in SHIP_TO},
        paste=_text(form, "paste", 40_000),
        find=_text(form, "find", MAX_TYPED),
        key=_text(form, "key", 64),
    )


@dataclass
class PasteError:
    """A pasted line that could not be read: its number, its text and why."""

    number: int
    text: str
    why: str

    def __str__(self) -> str:
        return f"pasted line {self.number} ({self.text.strip()[:60]!r}): {self.why}"


def parse_paste(text: str) -> tuple[list[Row], list[PasteError]]:
    """Lines pasted from an e-mail, `SKU quantity` each (also `quantity SKU`, `SKU x 10`,
    `SKU, 10`): the rows read, and each line that could not be read, named."""
    rows: list[Row] = []
    bad: list[PasteError] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        tokens = [t for t in PASTE_SPLIT.split(line.strip()) if t.lower() not in PASTE_NOISE]
        if len(tokens) < 2:
            bad.append(PasteError(n, line, "give a SKU and a quantity"))
        elif len(tokens) > 2:
            bad.append(PasteError(n, line, "more than a SKU and a quantity"))
        elif tokens[1].isdigit():
            rows.append(Row(sku=tokens[0], qty=tokens[1]))
        elif tokens[0].isdigit():
            rows.append(Row(sku=tokens[1], qty=tokens[0]))
        else:
            bad.append(PasteError(n, line, "the quantity is not a whole number"))
    return rows, bad


def _like(typed: str) -> str:
    escaped = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def find_customers(
    session: AsyncSession, typed: str
) -> tuple[Customer | None, list[Customer]]:
    """The customer `typed` names (its code in any case, or the one customer whose code or
    name contains it), and the customers it could mean."""
    typed = _typed(typed)
    if not typed:
        return None, []
    for code in dict.fromkeys((typed, typed.upper())):
        exact = await session.get(Customer, code)
        if exact is not None:
            return exact, [exact]
    pattern = _like(typed)
    matches = list(
        await session.scalars(
            select(Customer)
            .where(
                or_(
                    Customer.code.ilike(pattern, escape="\\"),
                    Customer.name.ilike(pattern, escape="\\"),
                )
            )
            .order_by(Customer.code)
            .limit(MATCHES)
        )
    )
    return (matches[0] if len(matches) == 1 else None), matches


async def find_products(session: AsyncSession, typed: str) -> list[Product]:
    """Active products whose SKU or name contains `typed`, exact SKU first."""
    typed = _typed(typed)
    if not typed:
        return []
    pattern = _like(typed)
    return list(
        await session.scalars(
            select(Product)
            .where(
                Product.active,
                or_(
                    Product.sku.ilike(pattern, escape="\\"),
                    Product.name.ilike(pattern, escape="\\"),
                ),
            )
            .order_by((Product.sku == typed.upper()).desc(), Product.sku)
            .limit(MATCHES)
        )
    )


async def _resolve_skus(session: AsyncSession, rows: list[Row]) -> None:
    """A SKU typed in any case is the product's SKU; its facts come along."""
    for r in rows:
        r.sku = _typed(r.sku)
    typed = {r.sku for r in rows if r.sku}
    wanted = typed | {s.upper() for s in typed}
    found = {
        p.sku: p for p in await session.scalars(select(Product).where(Product.sku.in_(wanted)))
    }
    for r in rows:
        s = r.sku
        product = found.get(s) or found.get(s.upper())
        if product is not None:
            r.sku, r.product = product.sku, product
        else:
            r.sku = s
    stock = await repo.load_stock(session, found)
    for r in rows:
        if r.product is not None and r.product.sku in stock:
            facts = stock[r.product.sku]
            r.available, r.next_receipt = facts.available, facts.next_receipt


async def _suggest_substitutes(session: AsyncSession, rows: list[Row]) -> None:
    """For each short row: its substitutes that have stock, in the order they are listed."""
    short = {r.sku for r in rows if r.short > 0}
    if not short:
        return
    subs = (
        await session.execute(
            select(ProductSubstitute.sku, Product)
            .join(Product, Product.sku == ProductSubstitute.substitute_sku)
            .where(ProductSubstitute.sku.in_(short), Product.active)
            .order_by(ProductSubstitute.sku, ProductSubstitute.position)
        )
    ).all()
    stock = await repo.load_stock(session, {p.sku for _, p in subs})
    on_form = {r.sku for r in rows}
    for r in rows:
        if r.short <= 0:
            continue
        for sku, p in subs:
            available = stock[p.sku].available if p.sku in stock else 0
            if sku != r.sku or available <= 0 or p.sku in on_form:
                continue
            r.substitutes.append(
                {
                    "sku": p.sku,
                    "name": p.name,
                    "available": available,
                    "pack_size": p.pack_size,
                    "min_order_qty": p.min_order_qty,
                    "covers": r.quantity is not None and available >= r.quantity,
                }
            )


def _problem(loc: list[Any], code: str, message: str, row: int | None = None) -> dict[str, Any]:
    return {"loc": loc, "code": code, "message": message, "row": row}


def _schema_problems(err: ValidationError, filled: list[Row]) -> list[dict[str, Any]]:
    """OrderIn's own complaints (the 422 of POST /orders), each tied to its form row."""
    out = []
    for e in err.errors():
        loc = list(e["loc"])
        row = None
        if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int):
            row = filled[loc[1]].index
        if loc == ["lines"] and e["type"] == "too_short":
            message = "add at least one line"
        elif loc[-1:] == ["quantity"] and e.get("input") == "":
            message = "quantity: give a quantity"
        elif loc and isinstance(loc[-1], str) and loc[-1] not in WHERE:
            message = f"{loc[-1].replace('_', ' ')}: {e['msg']}"
        else:
            message = str(e["msg"])
        out.append(_problem(loc, e["type"], message, row))
    return out


def _raw_order(draft: Draft, customer_code: str, filled: list[Row]) -> dict[str, Any]:
    """The JSON body POST /orders would get for this form."""
    raw: dict[str, Any] = {
        "customer_code": customer_code,
        "channel": CHANNEL,
        "lines": [{"sku": r.sku, "quantity": r.qty.strip()} for r in filled],
    }
    if draft.external_ref.strip():
        raw["external_ref"] = draft.external_ref.strip()
    if draft.requested_delivery_date.strip():
        raw["requested_delivery_date"] = draft.requested_delivery_date.strip()
    if draft.special_instructions.strip():
        raw["special_instructions"] = draft.special_instructions.strip()
    if draft.allow_partial_shipment in ("true", "false"):
        raw["allow_partial_shipment"] = draft.allow_partial_shipment == "true"
    if any(v.strip() for v in draft.ship_to.values()):
        raw["ship_to"] = {k: v.strip() for k, v in draft.ship_to.items()}
    return raw


async def assess(session: AsyncSession, user: Caller, draft: Draft) -> Assessment:
    """Check the draft with POST /orders' own model and quote(); every problem at once."""
    result = Assessment(draft)
    filled = [r for r in draft.rows if not r.blank]
    await _resolve_skus(session, filled)
    found, result.matches = await find_customers(session, draft.customer)
    problems: list[dict[str, Any]] = []
    if found is not None:
        result.customer = await get_customer(found.code, session, user)
    elif not draft.customer.strip():
        problems.append(_problem(["customer_code"], "missing", "type a customer code or name"))
    elif result.matches:
        names = ", ".join(c.code for c in result.matches)
        problems.append(
            _problem(
                ["customer_code"],
                "customer_ambiguous",
                f"{draft.customer.strip()!r} matches {len(result.matches)}"
                f"{'+' if len(result.matches) == MATCHES else ''} customers ({names}): pick one",
            )
        )
    else:
        problems.append(
            _problem(
                ["customer_code"],
                "unknown_customer",
                f"no customer's code or name contains {draft.customer.strip()!r}",
            )
        )
    # The customer is not found: the rules must not report it a second time.
    code = found.code if found else "?"
    raw = _raw_order(draft, code, filled)
    try:
        body = OrderIn.model_validate(raw)
        result.body = body
        good = filled
    except ValidationError as err:
        schema = _schema_problems(err, filled)
        problems += [p for p in schema if found or p["loc"][:1] != ["customer_code"]]
        # Check what does parse, so the other problems show now rather than after a fix.
        bad_rows = {p["row"] for p in schema if p["row"] is not None}
        bad_fields = {p["loc"][0] for p in schema if p["loc"] and p["loc"][0] != "lines"}
        good = [r for r in filled if r.index not in bad_rows]
        partial = {k: v for k, v in raw.items() if k not in bad_fields or k == "customer_code"}
        partial["customer_code"] = code if "customer_code" not in bad_fields else "?"
        partial["lines"] = [{"sku": r.sku, "quantity": r.qty.strip()} for r in good]
        try:
            body = OrderIn.model_validate({**partial, "lines": partial["lines"] or [raw_line()]})
        except ValidationError:  # pragma: no cover - every failing part was removed
            body = None
        if body is not None and not good:
            body = body.model_copy(update={"lines": []})
    if body is not None:
        q = await quote(session, body, datetime.now(UTC).date())
        for p in q.problems:
            if p.loc[:1] == ["customer_code"] and found is None:
                continue
            row = good[int(p.loc[1])].index if len(p.loc) >= 2 and p.loc[0] == "lines" else None
            problems.append(_problem(p.loc, p.code, p.message, row))
        if q.priced is not None and good:
            prices: list[PricedLine | None] = list(q.priced.lines)
            if not problems:
                result.totals = _totals(q.priced, result.customer)
        elif result.customer is not None:
            prices = await _price_clean_lines(session, body, good, problems)
        else:
            prices = []
        for r, line in zip(good, prices, strict=False):
            r.price = line
    await _suggest_substitutes(session, filled)
    for problem in problems:
        if problem["row"] is not None:
            with_problem = next(r for r in filled if r.index == problem["row"])
            with_problem.problems.append(problem["message"])
    result.problems = problems
    return result


def raw_line() -> dict[str, Any]:
    """A line that parses, standing in while every line of the draft is wrong."""
    return {"sku": "?", "quantity": 1}


async def _price_clean_lines(
    session: AsyncSession, body: OrderIn, good: list[Row], problems: list[dict[str, Any]]
) -> list[PricedLine | None]:
    """quote() prices only an order without problems: price the lines that have none on
    their own (customer and lines only), so each shows this customer's price while another
    part of the draft is still wrong. None for a line left out."""
    clean = [i for i, r in enumerate(good) if not any(p["row"] == r.index for p in problems)]
    if not clean:
        return []
    subset = OrderIn(
        customer_code=body.customer_code,
        channel=body.channel,
        lines=[body.lines[i] for i in clean],
    )
    q = await quote(session, subset, datetime.now(UTC).date())
    if q.priced is None:
        return []
    by_index = dict(zip(clean, q.priced.lines, strict=True))
    return [by_index.get(i) for i in range(len(good))]


def _totals(priced: Any, customer: CustomerOut | None) -> dict[str, Any]:
    total = Decimal(priced.total)
    return {
        "subtotal": priced.subtotal,
        "order_discount": priced.order_discount,
        "order_discount_rule": priced.order_discount_rule,
        "total": total,
        "credit_after": None if customer is None else customer.available_credit - total,
    }


def _blank_rows(rows: list[Row]) -> list[Row]:
    """The filled rows, then empty ones to type into; numbered as the form numbers them."""
    filled = [r for r in rows if not r.blank]
    count = max(MIN_ROWS, len(filled) + BLANK_ROWS)
    out = filled + [Row(sku="", qty="") for _ in range(count - len(filled))]
    for i, r in enumerate(out):
        r.index = i
    return out


def _view(a: Assessment) -> dict[str, Any]:
    return {
        "draft": a.draft,
        "customer": a.customer,
        "matches": a.matches,
        "problems": a.problems,
        "where": where,
        "totals": a.totals,
        "valid": a.valid,
    }


def where(problem: dict[str, Any]) -> str:
    """Where a problem is, in the words of the form: "Line 3", "Customer"..."""
    if problem.get("row") is not None:
        return f"Line {problem['row'] + 1}"
    loc = problem["loc"]
    return WHERE.get(str(loc[0]), str(loc[0])) if loc else "Order"


async def _page(
    request: Request,
    session: AsyncSession,
    user: Caller,
    draft: Draft,
    status_code: int = 200,
    notes: list[str] | None = None,
    paste_problems: list[PasteError] | None = None,
    found: list[dict[str, Any]] | None = None,
    focus: str = "customer",
    extra: list[dict[str, Any]] | None = None,
) -> Response:
    draft.rows = _blank_rows(draft.rows)  # numbered as shown, before the problems name them
    assessment = await assess(session, user, draft) if _started(draft) else Assessment(draft)
    assessment.problems += extra or []
    if not KEY.match(draft.key):
        draft.key = uuid.uuid4().hex
    return render(
        request,
        "entry.html",
        user,
        status_code=status_code,
        notes=notes or [],
        paste_problems=paste_problems or [],
        found=found,
        focus=focus,
        **_view(assessment),
    )


def _started(draft: Draft) -> bool:
    return bool(draft.customer.strip()) or any(not r.blank for r in draft.rows)


@router.get("")
async def entry_form(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    customer: Annotated[str, Query(max_length=MAX_TYPED)] = "",
) -> Response:
    """A fresh form; its idempotency key makes a double submit one order."""
    draft = Draft(customer=customer, key=uuid.uuid4().hex)
    return await _page(request, session, user, draft, focus="sku-0" if customer else "customer")


@router.post("")
async def entry_post(
    request: Request, state: StateDep, session: SessionDep, user: CurrentUser
) -> Response:
    """Every button of the form: check, paste lines, find a product, add or swap one, and
    create the order (the only one that writes)."""
    form = await request.form()
    draft = read_form(form)
    action = _text(form, "action", 20)
    add, swap = _text(form, "add", 60), _text(form, "swap", 100)
    if action == "create":
        return await _create(request, state, session, user, draft)
    if action == "paste":
        rows, bad = parse_paste(draft.paste)
        filled = [r for r in draft.rows if not r.blank]
        room = MAX_LINES - len(filled)
        if len(rows) > room:
            why = f"only {MAX_LINES} lines fit an order: this line and those after it"
            bad.append(PasteError(0, f"{rows[room].sku} {rows[room].qty}", why))
            rows = rows[:room]
        draft.rows = filled + rows
        # What could not be read stays in the box, to be fixed and pasted again.
        kept = {e.number for e in bad}
        draft.paste = "\n".join(
            line for n, line in enumerate(draft.paste.splitlines(), 1) if n in kept
        )
        notes = [f"{len(rows)} pasted line{'s' if len(rows) != 1 else ''} added."]
        return await _page(
            request, session, user, draft, notes=notes, paste_problems=bad, focus="problems"
        )
    if add:
        filled = [r for r in draft.rows if not r.blank]
        draft.rows = [*filled, Row(sku=add, qty="")]
        return await _page(request, session, user, draft, focus=f"qty-{len(filled)}")
    if swap and ":" in swap:
        index, sku = swap.split(":", 1)
        for r in draft.rows:
            if str(r.index) == index:
                r.sku = sku
        return await _page(request, session, user, draft, focus="problems")
    if pick := _text(form, "pick_customer", 60):
        draft.customer = pick
        first_empty = sum(1 for r in draft.rows if not r.blank)
        return await _page(request, session, user, draft, focus=f"sku-{first_empty}")
    if action == "find":
        found = await _found(session, draft.find)
        return await _page(request, session, user, draft, found=found, focus="find")
    return await _page(request, session, user, draft, focus="problems")


async def _create(
    request: Request, state: StateDep, session: AsyncSession, user: Caller, draft: Draft
) -> Response:
    """The order, through the same create_order as POST /orders; then its page."""
    if not KEY.match(draft.key):
        note = "This form had no valid key (an old page?): check the order and create it again."
        return await _page(request, session, user, draft, 422, notes=[note], focus="problems")
    assessment = await assess(session, user, draft)
    if assessment.body is None or any(
        p["code"] in ("missing", "customer_ambiguous", "unknown_customer")
        and p["loc"] == ["customer_code"]
        for p in assessment.problems
    ):
        return await _page(request, session, user, draft, 422, focus="problems")
    body = assessment.body
    started = time.perf_counter()
    try:
        async with state.sessions() as s:
            body = await check_channel(s, user, body)
        answer, created = await create_order(
            state.sessions,
            state.client,
            state.settings,
            body,
            idempotency_key=draft.key,
            actor=user.name,
            scope=user.scope,
        )
    except ProblemsError as err:
        ORDERS_REFUSED.labels(body.channel).inc()
        extra = [_refusal(p) for p in err.problems]
        # The draft's own problems are recomputed on the page; add only what is new.
        shown = {(tuple(p["loc"]), p["code"]) for p in assessment.problems}
        extra = [p for p in extra if (tuple(p["loc"]), p["code"]) not in shown]
        return await _page(
            request, session, user, draft, err.status_code, focus="problems", extra=extra
        )
    except OrderStartError as err:
        note = f"{err}. Press Create order again to start it (it will not be entered twice)."
        return await _page(request, session, user, draft, 503, notes=[note], focus="problems")
    finally:
        INTAKE_SECONDS.observe(time.perf_counter() - started)
    if created:
        ORDERS_STARTED.labels(body.channel).inc()
    return RedirectResponse(f"/ui/orders/{answer['id']}", status_code=303)


def _refusal(p: Problem) -> dict[str, Any]:
    """A refusal of create_order for a person; loc as POST /orders gives it."""
    message = p.message
    if p.code == "idempotency_key_reused":
        message = (
            "this form already created an order with other contents: open a new order form "
            "to enter another order"
        )
    return _problem(list(p.loc), p.code, message)


async def _found(session: AsyncSession, typed: str) -> list[dict[str, Any]]:
    products = await find_products(session, typed)
    stock = await repo.load_stock(session, {p.sku for p in products})
    return [
        {
            "sku": p.sku,
            "name": p.name,
            "unit_price": p.unit_price,
            "pack_size": p.pack_size,
            "min_order_qty": p.min_order_qty,
            "available": stock[p.sku].available if p.sku in stock else 0,
            "next_receipt": stock[p.sku].next_receipt if p.sku in stock else None,
        }
        for p in products
    ]


def _fragments() -> Any:
    return templates.env.get_template("_entry_parts.html").module


@router.post("/check")
async def check(request: Request, session: SessionDep, user: CurrentUser) -> JSONResponse:
    """The form checked as it is typed: every problem, each line's facts and this customer's
    prices, and the page's fragments to put in place. Writes nothing."""
    draft = read_form(await request.form())
    a = await assess(session, user, draft)
    parts = _fragments()
    view = _view(a)
    c = a.customer
    return JSONResponse(
        {
            "valid": a.valid,
            "problems": a.problems,
            "customer": None if c is None else c.model_dump(mode="json"),
            "customer_matches": [{"code": m.code, "name": m.name} for m in a.matches],
            "lines": [_line_json(r) for r in draft.rows if not r.blank],
            "totals": None
            if a.totals is None
            else {k: None if v is None else str(v) for k, v in a.totals.items()},
            "html": {
                "customer": str(parts.customer_panel(c, a.matches, draft.customer)),
                "problems": str(parts.problem_list(a.problems, where)),
                "totals": str(parts.totals_panel(a.totals, view["valid"], a.problems)),
                "lines": {str(r.index): str(parts.line_facts(r)) for r in draft.rows},
            },
        }
    )


def _line_json(r: Row) -> dict[str, Any]:
    p = r.product
    return {
        "row": r.index,
        "sku": r.sku,
        "quantity": r.quantity,
        "product": None
        if p is None
        else {
            "sku": p.sku,
            "name": p.name,
            "pack_size": p.pack_size,
            "min_order_qty": p.min_order_qty,
            "make_to_order": p.make_to_order,
            "active": p.active,
        },
        "available": r.available,
        "short": r.short,
        "next_receipt": None if r.next_receipt is None else str(r.next_receipt),
        "price": None if r.price is None else r.price.model_dump(mode="json"),
        "substitutes": r.substitutes,
        "problems": r.problems,
    }


@router.get("/customers")
async def customer_lookup(
    session: SessionDep, user: CurrentUser, q: Annotated[str, Query(max_length=MAX_TYPED)] = ""
) -> JSONResponse:
    """Customers whose code or name contains `q`; the facts of the one it names, if any."""
    found, matches = await find_customers(session, q)
    facts = None if found is None else await get_customer(found.code, session, user)
    return JSONResponse(
        {
            "customer": None if facts is None else facts.model_dump(mode="json"),
            "matches": [
                {"code": m.code, "name": m.name, "city": m.city, "status": m.status}
                for m in matches
            ],
        }
    )


@router.get("/products")
async def product_lookup(
    session: SessionDep, _: CurrentUser, q: Annotated[str, Query(max_length=MAX_TYPED)] = ""
) -> JSONResponse:
    """A few products whose SKU or name contains `q`, with stock and when more comes."""
    found = await _found(session, q)
    return JSONResponse(
        {
            "products": [
                {
                    **f,
                    "unit_price": str(f["unit_price"]),
                    "next_receipt": None if f["next_receipt"] is None else str(f["next_receipt"]),
                }
                for f in found
            ],
            "html": str(_fragments().search_results(found, q)),
        }
    )
