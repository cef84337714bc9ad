"""Order entry at /ui/orders/new: lookups, the check as you type (the rules of POST /orders,
every problem at once), pasted lines, substitutes of a short product, one order per form
however often it is submitted; and, in a real browser, a five-line order typed and pasted,
with its keystrokes and seconds measured."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from api.ui.entry import parse_paste
from db.models import Order, OrderLine, RejectedAttempt
from tests.api.test_ui import Console, console
from tests.utils import Stack

KEY = re.compile(r'name="key" value="([0-9a-f]{32})"')
SKUS = re.compile(r'name="sku" value="([^"]*)"')


async def named_customer(stack: Stack, name: str, code: str = "", **kw: object) -> str:
    code = code or f"C-{uuid.uuid4().hex[:8].upper()}"
    address = {"line1": "1 Quay", "city": "Ningbo", "postal_code": "315000", "country": "CN"}
    r = await stack.post(
        "/customers", {"code": code, "name": name, "address": address, **kw}, "credit_controller"
    )
    assert r.status_code == 201, r.text
    return code


def key_of(page_text: str) -> str:
    m = KEY.search(page_text)
    assert m, "the form carries an idempotency key"
    return m.group(1)


async def product(stack: Stack, stock: int = 1000, sku: str = "", **kw: object) -> str:
    """A product (optionally with `substitutes`) and its stock."""
    sku = sku or f"P-{uuid.uuid4().hex[:8].upper()}"
    body = {
        "sku": sku,
        "name": f"Thing {sku}",
        "unit_price": "10.00",
        "floor_price": "8.00",
        **kw,
    }
    r = await stack.post("/products", body)
    assert r.status_code == 201, r.text
    assert (await stack.put(f"/inventory/{sku}", {"on_hand": stock})).status_code == 200
    return sku


def form(customer: str, lines: list[tuple[str, str]], key: str = "", **extra: str) -> dict:
    """The entry form's fields, as a browser sends them (repeated sku and qty)."""
    return {
        "customer": customer,
        "sku": [s for s, _ in lines],
        "qty": [q for _, q in lines],
        "key": key,
        **extra,
    }


async def check(c: Console, data: dict) -> dict:
    r = await c.post("/ui/orders/new/check", data)
    assert r.status_code == 200, r.text
    return r.json()


async def test_customer_and_product_lookups(api_stack: Stack):
    stack = api_stack
    uid = uuid.uuid4().hex[:8]
    code = await named_customer(
        stack, f"Harbour {uid} Hardware", credit_limit="5000.00", payment_terms_days=45
    )
    await named_customer(stack, f"Harbour {uid} Marine")
    sku = await product(stack, stock=7, pack_size=5, min_order_qty=10)
    when = (datetime.now(UTC).date() + timedelta(days=9)).isoformat()
    r = await stack.post(
        f"/inventory/{sku}/replenishments", {"quantity": 50, "expected_date": when}, "ops"
    )
    assert r.status_code == 201, r.text
    async with console(stack, "sales") as c:
        # A code in any case names the customer: its ship-to, terms, limit and credit.
        found = (await c.page(f"/ui/orders/new/customers?q={code.lower()}")).json()
        facts = found["customer"]
        assert facts["code"] == code and facts["payment_terms_days"] == 45
        assert facts["credit_limit"] == "5000.00" and facts["available_credit"] == "5000.00"
        assert facts["address"]["city"] == "Ningbo"
        # Part of a name that one customer has names it too; a common part lists several.
        by_name = (await c.page(f"/ui/orders/new/customers?q={uid} hardw")).json()
        assert by_name["customer"]["code"] == code
        several = (await c.page(f"/ui/orders/new/customers?q=HARBOUR {uid}")).json()
        assert several["customer"] is None and len(several["matches"]) == 2
        many = (await c.page("/ui/orders/new/customers?q=C-")).json()
        assert many["customer"] is None and 1 < len(many["matches"]) <= 8
        nothing = (await c.page("/ui/orders/new/customers?q=%25_nobody")).json()
        assert nothing == {"customer": None, "matches": []}

        products = (await c.page(f"/ui/orders/new/products?q=thing {sku.lower()}")).json()
        assert [p["sku"] for p in products["products"]] == [sku]
        p = products["products"][0]
        assert (p["pack_size"], p["min_order_qty"], p["available"]) == (5, 10, 7)
        assert p["next_receipt"] == when and f'Add<span class="sr-only"> {sku}' in products["html"]
        assert len((await c.page("/ui/orders/new/products?q=P-")).json()["products"]) <= 8

    # The lookups are order entry's: a role that may not enter orders may not look.
    async with console(stack, "ops") as c:
        assert (await c.page("/ui/orders/new/customers?q=C")).status_code == 403
        assert (await c.page("/ui/orders/new")).status_code == 403


async def test_the_check_names_every_problem_at_once_as_post_orders_does(api_stack: Stack):
    stack = api_stack
    code = await stack.customer(tier="gold")
    good = await product(stack, stock=100)
    boxed = await product(stack, stock=100, pack_size=10, min_order_qty=20)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    lines = [(good.lower(), "4"), ("NO-SUCH-SKU", "1"), (boxed, "15"), (good, "2")]
    async with console(stack, "sales") as c:
        await c.page("/ui/orders/new")
        a = await check(c, form(code, lines, requested_delivery_date=yesterday))
        assert a["valid"] is False
        got = sorted((p["code"], p["row"]) for p in a["problems"])
        assert got == [
            ("below_min_order_qty", 2),
            ("date_in_past", None),
            ("duplicate_sku", 3),
            ("pack_size_multiple", 2),
            ("unknown_sku", 1),
        ]
        # The same draft through POST /orders: the same rules, the same problems.
        body = {
            "customer_code": code,
            "channel": "console",
            "requested_delivery_date": yesterday,
            "lines": [{"sku": s.upper(), "quantity": int(q)} for s, q in lines],
        }
        api = await stack.post("/orders", body, "sales")
        assert api.status_code == 422
        assert sorted(p["code"] for p in api.json()["detail"]) == [c for c, _ in got]

        # Each line's facts; the line without a problem already shows this customer's price,
        # the very price (and rule) of the price preview.
        first = a["lines"][0]
        assert first["sku"] == good and first["product"]["name"] == f"Thing {good}"
        assert first["available"] == 100 and first["short"] == 0
        preview = await stack.post(
            "/pricing/preview",
            {"customer_code": code, "lines": [{"sku": good, "quantity": 4}]},
            "sales",
        )
        want = preview.json()["lines"][0]
        assert first["price"]["unit_price"] == want["unit_price"]
        assert first["price"]["price_rule"] == want["price_rule"]
        assert "min 20" in a["html"]["lines"]["2"] and "pack 10" in a["html"]["lines"]["2"]
        assert "5 problems to fix" in a["html"]["problems"]

        # A quantity that is not a number is named with its line, and the rest still checked.
        a = await check(c, form(code, [(good, "abc"), (boxed, "15"), ("", "")]))
        got = sorted((p["code"], p["row"]) for p in a["problems"])
        assert got == [("below_min_order_qty", 1), ("int_parsing", 0), ("pack_size_multiple", 1)]

        # The customer: unknown, ambiguous, on hold; and a clean draft with its totals.
        a = await check(c, form("no such customer at all", [(good, "1")]))
        assert [p["code"] for p in a["problems"]] == ["unknown_customer"]
        held = await stack.customer(status="on_hold")
        a = await check(c, form(held.lower(), [(good, "1")]))
        assert [p["code"] for p in a["problems"]] == ["customer_on_hold"]
        a = await check(c, form(code, [(good, "4"), (boxed, "20")]))
        assert a["valid"] is True and a["problems"] == []
        totals = {k: Decimal(v) for k, v in a["totals"].items() if k != "order_discount_rule"}
        assert totals["subtotal"] == sum(Decimal(ln["price"]["line_total"]) for ln in a["lines"])
        assert totals["total"] == totals["subtotal"] - totals["order_discount"] > 0
        assert "ready to create" in a["html"]["totals"]
    async with stack.sessions() as s:
        refused = await s.scalars(
            select(RejectedAttempt).where(RejectedAttempt.customer_code == code)
        )
        assert len(refused.all()) == 1, "only POST /orders recorded a refusal, no check did"


def test_paste_reads_sku_quantity_lines_and_names_the_bad_ones():
    rows, bad = parse_paste(
        "WID-001 20\n\nBOLT-M6 x 50\n30 NUT-M8\nPIPE-20, 4 pcs\nVALVE-20 five\nCABLE-2\n"
        "LAMP-LED 2 4\n  PAINT-W\t7  \n"
    )
    assert [(r.sku, r.qty) for r in rows] == [
        ("WID-001", "20"),
        ("BOLT-M6", "50"),
        ("NUT-M8", "30"),
        ("PIPE-20", "4"),
        ("PAINT-W", "7"),
    ]
    assert [str(e) for e in bad] == [
        "pasted line 6 ('VALVE-20 five'): the quantity is not a whole number",
        "pasted line 7 ('CABLE-2'): give a SKU and a quantity",
        "pasted line 8 ('LAMP-LED 2 4'): more than a SKU and a quantity",
    ]


async def test_pasted_lines_join_the_form_and_bad_ones_stay_named(api_stack: Stack):
    stack = api_stack
    code = await stack.customer()
    a, b, typed = [await product(stack) for _ in range(3)]
    async with console(stack, "sales") as c:
        page = await c.page("/ui/orders/new")
        key = key_of(page.text)
        pasted = f"{a} 3\n{b} lots\n{b.lower()} 2\n"
        r = await c.post(
            "/ui/orders/new", form(code, [(typed, "1")], key, paste=pasted, action="paste")
        )
        assert r.status_code == 200
        assert "2 pasted lines added." in r.text
        assert (
            "pasted line 2 (&#39;" in r.text and "lots&#39;): the quantity is not a whole" in r.text
        )
        assert f">{b} lots</textarea>" in r.text, "the bad line stays in the box"
        skus = SKUS.findall(r.text)
        assert skus[:3] == [typed, a, b] and set(skus[3:]) == {""}, "lower case becomes the SKU"
        assert key_of(r.text) == key, "the same form: the same key"


async def test_products_carry_ordered_substitutes(api_stack: Stack):
    stack = api_stack
    first, second = await product(stack), await product(stack)
    sku = await product(stack, substitutes=[second, first])
    assert (await stack.get(f"/products/{sku}", "sales")).json()["substitutes"] == [second, first]
    assert (await stack.get(f"/products/{first}")).json()["substitutes"] == []

    bad = await stack.post(
        "/products",
        {
            "sku": "P-SUBS-BAD",
            "name": "x",
            "unit_price": "1",
            "floor_price": "1",
            "substitutes": [first, "NO-SUCH"],
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {
            "loc": ["body", "substitutes", 1],
            "code": "unknown_sku",
            "message": "no product 'NO-SUCH'",
        }
    ]
    assert (await stack.get("/products/P-SUBS-BAD")).status_code == 404, "nothing written"
    itself = await stack.post(
        "/products",
        {
            "sku": "P-SUBS-SELF",
            "name": "x",
            "unit_price": "1",
            "floor_price": "1",
            "substitutes": ["P-SUBS-SELF"],
        },
    )
    assert itself.status_code == 422 and "not name the product itself" in itself.text
    twice = await stack.post(
        "/products",
        {
            "sku": "P-SUBS-TWICE",
            "name": "x",
            "unit_price": "1",
            "floor_price": "1",
            "substitutes": [first, first],
        },
    )
    assert twice.status_code == 422 and "twice" in twice.text


async def test_a_short_product_suggests_its_substitutes_in_stock(api_stack: Stack):
    stack = api_stack
    code = await stack.customer()
    empty = await product(stack, stock=0)
    little = await product(stack, stock=3)
    plenty = await product(stack, stock=500)
    sku = await product(stack, stock=5, substitutes=[empty, little, plenty])
    async with console(stack, "sales") as c:
        page = await c.page("/ui/orders/new")
        key = key_of(page.text)
        a = await check(c, form(code, [(sku, "10")]))
        line = a["lines"][0]
        assert line["short"] == 5 and line["available"] == 5
        # In their listed order; the one with no stock is left out.
        assert [(s["sku"], s["available"], s["covers"]) for s in line["substitutes"]] == [
            (little, 3, False),
            (plenty, 500, True),
        ]
        assert f'value="0:{plenty}"' in a["html"]["lines"]["0"]
        # Enough stock: no suggestion.
        assert (await check(c, form(code, [(sku, "5")])))["lines"][0]["substitutes"] == []

        # Without JavaScript: the button swaps the line's product and checks again.
        r = await c.post(
            "/ui/orders/new", {**form(code, [(sku, "10")], key), "swap": f"0:{plenty}"}
        )
        assert r.status_code == 200
        assert SKUS.findall(r.text)[0] == plenty
        assert "ready to create" in r.text


async def test_submitting_twice_makes_one_order_and_opens_it(api_stack: Stack):
    stack = api_stack
    code = await stack.customer()
    a, b = await product(stack), await product(stack, pack_size=5, min_order_qty=5)
    async with console(stack, "sales") as c:
        page = await c.page("/ui/orders/new")
        assert page.status_code == 200 and 'href="/ui/orders/new" aria-current="page"' in page.text
        key = key_of(page.text)
        data = {
            **form(code.lower(), [(a, "3"), ("", ""), (b.lower(), "10")], key),
            "action": "create",
        }
        first, second = await asyncio.gather(
            c.post("/ui/orders/new", data), c.post("/ui/orders/new", data)
        )
        third = await c.post("/ui/orders/new", data)
        locations = {r.headers.get("location") for r in (first, second, third)}
        assert {r.status_code for r in (first, second, third)} == {303}, first.text
        assert len(locations) == 1
        order_id = locations.pop().rsplit("/", 1)[1]
        assert (await c.page(f"/ui/orders/{order_id}")).status_code == 200

        # Another form (another key) is another order.
        page = await c.page("/ui/orders/new")
        other = {**data, "key": key_of(page.text)}
        r = await c.post("/ui/orders/new", other)
        assert r.status_code == 303 and r.headers["location"] != f"/ui/orders/{order_id}"
    async with stack.sessions() as s:
        orders = (await s.scalars(select(Order).where(Order.customer_code == code))).all()
        assert len(orders) == 2
        mine = next(o for o in orders if o.id == order_id)
        assert mine.channel == "console" and mine.created_by.startswith("sales-")
        lines = (
            await s.scalars(
                select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
            )
        ).all()
        assert [(ln.sku, ln.quantity) for ln in lines] == [(a, 3), (b, 10)]


async def test_a_refused_order_shows_every_problem_and_writes_no_order(api_stack: Stack):
    stack = api_stack
    code = await stack.customer()
    sku = await product(stack, min_order_qty=10)
    async with console(stack, "sales") as c:
        page = await c.page("/ui/orders/new")
        key = key_of(page.text)
        data = {**form(code, [(sku, "3"), ("NOPE", "1")], key), "action": "create"}
        r = await c.post("/ui/orders/new", data)
        assert r.status_code == 422
        assert "2 problems to fix" in r.text
        assert "Line 1</strong>: quantity 3 is below the minimum order quantity 10" in r.text
        assert "Line 2</strong>: no product &#39;NOPE&#39;" in r.text
        # An unknown customer is not sent at all; nor is a form without its key.
        r = await c.post("/ui/orders/new", {**data, "customer": "zz-nobody-zz"})
        assert r.status_code == 422 and "no customer&#39;s code or name contains" in r.text
        r = await c.post("/ui/orders/new", {**form(code, [(sku, "10")]), "action": "create"})
        assert r.status_code == 422 and "no valid key" in r.text
        # Without the session's CSRF token nothing is even checked.
        r = await c.post("/ui/orders/new", data, csrf=False)
        assert r.status_code == 403
        r = await c.post("/ui/orders/new/check", data, csrf=False)
        assert r.status_code == 403
    assert await stack.count(Order, Order.customer_code == code) == 0


async def test_the_form_works_without_javascript(api_stack: Stack):
    """Find a product, add it, pick a customer among several: each a plain round trip."""
    stack = api_stack
    uid = uuid.uuid4().hex[:8]
    code = await named_customer(stack, f"Lotus {uid} East")
    other = await named_customer(stack, f"Lotus {uid} West")
    sku = await product(stack)
    async with console(stack, "sales") as c:
        page = await c.page(f"/ui/orders/new?customer={code}")
        assert "Available credit" in page.text and "1 Quay, 315000 Ningbo, CN" in page.text
        assert re.search(r'<input id="sku-0"[^>]* autofocus>', page.text)
        key = key_of(page.text)
        find = {**form(code, [], key), "find": sku.lower(), "action": "find"}
        r = await c.post("/ui/orders/new", find)
        assert f'name="add" value="{sku}"' in r.text
        r = await c.post("/ui/orders/new", {**form(code, [], key), "add": sku})
        assert SKUS.findall(r.text)[0] == sku
        assert re.search(r'<input id="qty-0"[^>]* autofocus>', r.text), "on to its quantity"
        r = await c.post("/ui/orders/new", form(f"lotus {uid}", [(sku, "1")], key))
        assert f'name="pick_customer" value="{other}"' in r.text and "pick one" in r.text
        pick = {**form(f"lotus {uid}", [(sku, "1")], key), "pick_customer": other}
        r = await c.post("/ui/orders/new", pick)
        assert f'name="customer" value="{other}"' in r.text and "ready to create" in r.text
    async with console(stack, "credit_controller") as c:
        inbox = await c.page("/ui/approvals")
        assert "/ui/orders/new" not in inbox.text, "no menu link for a role that may not"


# --- In a real browser: the five-line order, typed and pasted, measured. ---------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Keys:
    """A keyboard that counts: each character typed and each key or chord pressed is one
    keystroke (Ctrl+V, Ctrl+Enter: one each)."""

    def __init__(self, page):  # noqa: ANN001
        self.page = page
        self.count = 0

    async def type(self, text: str) -> None:
        await self.page.keyboard.type(text)
        self.count += len(text)

    async def press(self, key: str) -> None:
        await self.page.keyboard.press(key)
        self.count += 1


async def checked(page) -> None:  # noqa: ANN001
    """Wait until the last check as you type has come back (a locator, not a script: the
    page's Content-Security-Policy refuses evaluated strings)."""
    await page.locator("#entry:not([data-busy])").wait_for(state="attached")


async def focused(page, element_id: str) -> None:  # noqa: ANN001
    from playwright.async_api import expect

    await expect(page.locator(f"#{element_id}")).to_be_focused()


@pytest.mark.skipif(not CHROMIUM, reason="no chromium binary on PATH (apt-get install chromium)")
async def test_a_five_line_order_typed_and_pasted_in_a_browser(api_stack: Stack):
    from tests.api.test_ui_browser import PHONE, chromium, served, sign_in

    stack = api_stack
    # Codes as long as the demo data's (C-STD-1, WID-001): the keystrokes are a rep's.
    uid = uuid.uuid4().hex[:3].upper()
    code = await named_customer(
        stack, f"Quay {uid} Supplies", code=f"C-{uid}-1", tier="silver", credit_limit="20000.00"
    )
    skus = [await product(stack, sku=f"{uid}-00{i}") for i in range(1, 5)]
    spare = await product(stack, sku=f"{uid}-010")
    short = await product(stack, sku=f"{uid}-009", stock=2, substitutes=[spare])
    lines = [(skus[0], 12), (skus[1], 5), (skus[2], 40), (skus[3], 3), (short, 6)]
    want = [*lines[:4], (spare, 6)]  # the short product swapped for its substitute
    numbers: dict[str, tuple[int, int, float]] = {}
    keep = os.environ.get("ORDERFLOW_UI_SCREENSHOTS")
    if keep:
        await asyncio.to_thread(Path(keep).mkdir, parents=True, exist_ok=True)
    async with served(stack) as base, chromium() as browser:
        ctx, page = await sign_in(browser, base, stack.tokens["sales"])

        # 1. Typed: the customer's code, then SKU Enter quantity Enter five times (lower
        # case is fine); the short line's substitute taken with its button (one click);
        # Ctrl+Enter creates the order.
        await page.goto("/ui/orders/new")
        await focused(page, "customer")
        keys = Keys(page)
        started = time.monotonic()
        await keys.type(code.lower())
        await keys.press("Enter")
        for sku, qty in lines:
            await keys.type(sku.lower())
            await keys.press("Enter")
            await keys.type(str(qty))
            await keys.press("Enter")
        await checked(page)
        facts = await page.locator("#facts-4").inner_text()
        assert "short 4" in facts and f"Use {spare}" in facts, facts
        assert "Available credit" in await page.locator("#customer-facts").inner_text()
        assert "problem" not in await page.locator("#problems").inner_text()
        if keep:
            await page.screenshot(path=str(Path(keep) / "entry-desktop.png"), full_page=True)
        await page.locator("#facts-4").get_by_role("button", name=f"Use {spare}").click()
        await checked(page)
        assert await page.locator("#sku-4").input_value() == spare
        await page.locator("#totals").get_by_text("ready to create").wait_for()
        assert await page.locator("#sku-0").input_value() == skus[0], "the SKU as it is spelt"
        async with page.expect_navigation():
            await keys.press("Control+Enter")
        numbers["typed"] = (keys.count, 1, time.monotonic() - started)
        assert re.search(r"/ui/orders/[^/]+$", page.url) and "/new" not in page.url, page.url
        typed_id = page.url.rsplit("/", 1)[1]

        # 2. Pasted: the customer, a click in the paste box, Ctrl+V of the e-mail's five
        # lines, Ctrl+Enter to add them; the page then focuses Create order: Enter.
        await page.goto("/ui/orders/new")
        await focused(page, "customer")
        keys = Keys(page)
        started = time.monotonic()
        await keys.type(code.lower())
        await keys.press("Enter")
        email = "".join(f"{sku} x {qty}\n" for sku, qty in want)
        await page.locator("#paste").click()
        await page.locator("#paste").fill(email)  # what the paste does
        keys.count += 1  # Ctrl+V
        async with page.expect_navigation():
            await keys.press("Control+Enter")
        assert "5 pasted lines added." in await page.locator("main").inner_text()
        await focused(page, "create")
        async with page.expect_navigation():
            await keys.press("Enter")
        numbers["pasted"] = (keys.count, 1, time.monotonic() - started)
        assert "/new" not in page.url, await page.locator("main").inner_text()
        pasted_id = page.url.rsplit("/", 1)[1]
        await ctx.close()

        # A phone: the form, a short line and its substitute fit without sideways scrolling.
        ctx, page = await sign_in(browser, base, stack.tokens["sales"], PHONE)
        await page.goto(f"/ui/orders/new?customer={code}")
        await page.locator("#sku-0").fill(short.lower())
        await page.locator("#qty-0").fill("6")
        await checked(page)
        assert f"Use {spare}" in await page.locator("#facts-0").inner_text()
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the entry form scrolls sideways by {overflow}px on a phone"
        if keep:
            await page.screenshot(path=str(Path(keep) / "entry-phone.png"), full_page=True)
        await ctx.close()

    assert typed_id != pasted_id
    for order_id in (typed_id, pasted_id):
        async with stack.sessions() as s:
            got = (
                await s.execute(
                    select(OrderLine.sku, OrderLine.quantity)
                    .where(OrderLine.order_id == order_id)
                    .order_by(OrderLine.line_no)
                )
            ).all()
        assert [tuple(r) for r in got] == want, order_id
    for mode, (count, clicks, seconds) in numbers.items():
        # The browser types at machine speed; a person at about 0.3 s a keystroke (40 words
        # a minute) and 1.5 s a click (find the button, move, click).
        person = count * 0.3 + clicks * 1.5
        print(
            f"\norder entry, five lines, {mode}: {count} keystrokes and {clicks} click; "
            f"{seconds:.1f} s in the browser (page and checks included), about {person:.0f} s "
            "of typing and clicking for a person"
        )
