"""The console for the warehouse floor and the after-sale work over HTTP (httpx, in-process
app, real PostgreSQL and Temporal): a warehouse user confirms a pick and gives packages
through the forms and the order ships; the order page's priority, pick lists, packages,
returns and notices; returns decided from the approvals page; disruptions."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from temporalio.client import Client

from db.models import Package
from db.session import SessionFactory
from orderflow.embedded import EmbeddedPostgres
from services.config import Settings
from tests import conftest
from tests.api.test_ui import console, waiting_order
from tests.api.test_warehouse import _list_of, floor_stack
from tests.utils import Stack
from tests.utils import until as wait_until


@pytest.fixture
def settings(pg: EmbeddedPostgres) -> Settings:
    # Returns above 50.00 wait for a sales manager (as in tests/api/test_returns.py).
    return conftest.test_settings(pg, returns_auto_amount=Decimal("50.00"))


def _alert(text: str) -> str:
    """The text of the page's error box(es), tags stripped."""
    boxes = re.findall(r'<div class="msg error" role="alert">(.*?)</div>', text, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", b) for b in boxes)


async def test_warehouse_confirms_a_pick_and_gives_packages_in_the_console(
    pg: EmbeddedPostgres, sessions: SessionFactory, client: Client
):
    async with floor_stack(pg, sessions, client, wave_max_orders=1) as stack:
        customer = await stack.customer()
        a = await stack.product(stock=20, bin_location="C-02-01")
        b = await stack.product(stock=20, bin_location="A-01-03")
        order_id = (await stack.order(customer, [(a, 2), (b, 3)])).json()["id"]
        p = await _list_of(stack, order_id)
        confirm = f"/ui/pick-lists/{p['id']}/confirm"
        async with console(stack, "warehouse") as wh, console(stack, "sales") as sales:
            home = await wh.page("/ui")
            assert home.status_code == 303 and home.headers["location"] == "/ui/pick-lists"
            assert (await sales.page("/ui/pick-lists")).status_code == 403
            assert (
                await sales.post(confirm, {"picked_0": "3", "picked_1": "2"})
            ).status_code == 403

            page = await wh.page("/ui/pick-lists")
            assert page.status_code == 200 and f'action="{confirm}"' in page.text
            # Walking order (aisle A before C), bins, prefilled quantities, the saving.
            assert page.text.index("A-01-03") < page.text.index("C-02-01")
            assert 'name="picked_0"' in page.text and 'value="3"' in page.text
            assert "shorter than by bin code" in page.text and f"{p['distance_m']} m" in page.text
            sheet = await wh.page(f"/ui/pick-lists/{p['id']}.xlsx")
            assert sheet.status_code == 200
            rows = list(load_workbook(io.BytesIO(sheet.content)).active.iter_rows(values_only=True))
            assert [r[2] for r in rows[4:]] == [b, a]

            # Bad input: named by its line and bin, what was typed kept, nothing confirmed.
            bad = await wh.post(confirm, {"picked_0": "three", "picked_1": ""})
            assert bad.status_code == 422, bad.text
            msg = _alert(bad.text)
            assert f"line 1 ({b} at A-01-03): picked must be a whole number" in msg, msg
            assert f"line 2 ({a} at C-02-01): picked is missing" in msg, msg
            assert 'value="three"' in bad.text
            bad = await wh.post(confirm, {"picked_0": "4", "picked_1": "2"})
            assert bad.status_code == 422 and "between 0 and 3" in _alert(bad.text), bad.text
            assert (await stack.get(f"/orders/{order_id}")).json()["status"] == "picking"
            assert (
                await wh.post(confirm, {"picked_0": "3", "picked_1": "2"}, csrf=False)
            ).status_code == 403

            r = await wh.post(confirm, {"picked_0": "3", "picked_1": "2"})
            assert r.status_code == 303, r.text
            done = await wh.page(r.headers["location"])
            assert f"Pick list #{p['id']} confirmed" in done.text
            await stack.wait_status(order_id, "packed")

            page = await wh.page("/ui/pick-lists")
            pack = f"/ui/orders/{order_id}/packages"
            assert f'action="{pack}"' in page.text and f'action="{confirm}"' not in page.text
            # One more row without JavaScript: what was typed stays.
            more = await wh.post(
                pack, {"rows": "1", "weight_kg_1": "2.5", "length_cm_1": "40", "action": "add"}
            )
            assert more.status_code == 200 and 'name="weight_kg_2"' in more.text
            assert 'value="2.5"' in more.text
            row1 = {
                "weight_kg_1": "0",
                "length_cm_1": "40",
                "width_cm_1": "30",
                "height_cm_1": "20",
            }
            bad = await wh.post(pack, {"rows": "2", **row1, "weight_kg_2": "1.5"})
            assert bad.status_code == 422, bad.text
            assert "package 2: length_cm, width_cm, height_cm missing" in _alert(bad.text)
            bad = await wh.post(pack, {"rows": "2", **row1})
            assert bad.status_code == 422 and "package 1 weight_kg" in _alert(bad.text)
            assert await stack.count(Package, Package.order_id == order_id) == 0

            box2 = {
                "weight_kg_2": "1.25",
                "length_cm_2": "30",
                "width_cm_2": "20",
                "height_cm_2": "10",
            }
            r = await wh.post(pack, {"rows": "2", **row1, "weight_kg_1": "2.50", **box2})
            assert r.status_code == 303, r.text
            assert (
                f"Order {order_id}: packages given" in (await wh.page(r.headers["location"])).text
            )
            order = await stack.wait_status(order_id, "completed")
            assert [pk["weight_kg"] for pk in order["packages"]] == ["2.50", "1.25"]
            assert [s["status"] for s in order["shipments"]] == ["delivered"]

            again = await wh.post(pack, {"rows": "1", **row1, "weight_kg_1": "1"})
            assert again.status_code == 409 and "has finished" in _alert(again.text)

            page = await wh.page(f"/ui/orders/{order_id}")
            assert page.status_code == 200
            assert f"#{p['id']}" in page.text and "2.50 kg, 40.0 × 30.0 × 20.0 cm" in page.text
            assert 'action="/ui/orders/' not in page.text.split("floor-h")[1].split("</section>")[0]


async def test_ops_set_priority_on_the_order_page_and_approvers_see_it(stack: Stack):
    order_id, _ = await waiting_order(stack)
    path = f"/ui/orders/{order_id}/priority"
    async with console(stack, "ops") as ops, console(stack, "sales") as sales:
        page = await sales.page(f"/ui/orders/{order_id}")
        assert page.status_code == 200 and f'action="{path}"' not in page.text
        assert "Priority and the warehouse floor" in page.text and "No pick list yet." in page.text
        forged = await sales.post(path, {"priority": "urgent", "reason": "vip"})
        assert forged.status_code == 403

        page = await ops.page(f"/ui/orders/{order_id}")
        assert f'action="{path}"' in page.text
        bad = await ops.post(path, {"priority": "urgent", "reason": "  "})
        assert bad.status_code == 422 and "reason" in bad.text and "not changed" in bad.text
        bad = await ops.post(path, {"priority": "asap", "reason": "vip"})
        assert bad.status_code == 422 and "priority" in bad.text
        r = await ops.post(path, {"priority": "urgent", "reason": "customer line stopped"})
        assert r.status_code == 303, r.text
        page = await ops.page(r.headers["location"])
        assert "Priority set" in page.text and "ops, by hand" in page.text
        assert "customer line stopped" in page.text  # on the timeline
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert (order["priority"], order["priority_source"]) == ("urgent", "ops")
    async with console(stack, "credit_controller") as cc:
        inbox = await cc.page("/ui/approvals")
        row = inbox.text.split(f'href="/ui/orders/{order_id}"')[1].split("</td>")[0]
        assert "prio-urgent" in row
    cancel = await stack.post(f"/orders/{order_id}/cancel", {"reason": "test over"}, role="ops")
    assert cancel.status_code in (200, 202), cancel.text


async def test_returns_decided_from_the_approvals_page(stack: Stack):
    customer = await stack.customer()
    contact = {"email": "buyer@example.com", "webhook_url": None}
    assert (await stack.put(f"/customers/{customer}/contact", contact, "sales")).status_code == 200
    sku = await stack.product(price="10.00", floor="1.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 10)])).json()["id"]
    await stack.wait_status(order_id, "completed")

    async def noticed() -> bool:
        return bool((await stack.get(f"/orders/{order_id}/notices")).json())

    await wait_until(noticed, f"a customer notice of {order_id}")
    told = (await stack.get(f"/orders/{order_id}/notices")).json()
    body = {"lines": [{"sku": sku, "quantity": 10}], "reason": "not_needed"}
    rma = (await stack.post(f"/orders/{order_id}/returns", body, role="sales")).json()["id"]
    decide = f"/ui/returns/{rma}/decision"
    async with console(stack, "sales_manager") as sm, console(stack, "director") as director:

        async def listed() -> bool:
            return rma in (await sm.page("/ui/approvals")).text

        await wait_until(listed, f"{rma} on the sales manager's approvals page")
        page = await sm.page("/ui/approvals")
        assert f'action="{decide}"' in page.text and "100.00" in page.text
        other = await director.page("/ui/approvals")
        assert rma not in other.text and "No return waits for you." in other.text
        wrong = await director.post(decide, {"decision": "approve"})
        assert wrong.status_code == 403 and "waits for role sales_manager" in wrong.text
        bad = await sm.post(decide, {"decision": "maybe"})
        assert bad.status_code == 422 and "decision" in bad.text

        r = await sm.post(decide, {"decision": "approve", "comment": "ok, unopened"})
        assert r.status_code == 303, r.text
        assert f"Return {rma} approved" in (await sm.page(r.headers["location"])).text
        again = await sm.post(decide, {"decision": "reject"})
        assert again.status_code == 409 and "nothing awaits a decision" in again.text

        page = await sm.page(f"/ui/orders/{order_id}")
        section = page.text.split('id="ret-h"')[1].split("</section>")[0]
        assert rma in section and "approved" in section
        notices = page.text.split('id="notice-h"')[1].split("</section>")[0]
        assert "buyer@example.com" in notices
        assert f"<strong>{told[0]['event'].replace('_', ' ')}</strong> to email" in notices
    assert (await stack.get(f"/returns/{rma}")).json()["decided_by"].startswith("sales_manager")


async def test_ops_declare_and_lift_a_disruption(stack: Stack):
    sku = await stack.product()
    until = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
    async with console(stack, "ops") as ops, console(stack, "sales") as sales:
        page = await sales.page("/ui/disruptions")
        assert page.status_code == 200 and 'action="/ui/disruptions"' not in page.text
        forged = await sales.post("/ui/disruptions", {"sku": sku, "until": until, "reason": "x"})
        assert forged.status_code == 403

        page = await ops.page("/ui/disruptions")
        assert 'action="/ui/disruptions"' in page.text
        bad = await ops.post("/ui/disruptions", {"sku": sku, "until": "2001-01-01", "reason": ""})
        assert bad.status_code == 422, bad.text
        assert "reason" in _alert(bad.text) and 'value="2001-01-01"' in bad.text
        bad = await ops.post(
            "/ui/disruptions", {"sku": sku, "until": "2001-01-01", "reason": "flood"}
        )
        assert bad.status_code == 422 and "until" in _alert(bad.text), bad.text
        r = await ops.post(
            "/ui/disruptions", {"sku": sku.lower(), "until": until, "reason": "flood"}
        )
        assert r.status_code == 303, r.text
        page = await ops.page(r.headers["location"])
        assert "declared" in page.text and sku in page.text
        (d,) = [x for x in (await stack.get("/disruptions?active=true")).json() if x["sku"] == sku]
        lift = f"/ui/disruptions/{d['id']}/lift"
        assert f'action="{lift}"' in page.text
        r = await ops.post(lift, {})
        assert r.status_code == 303, r.text
        assert f"Disruption #{d['id']} lifted" in (await ops.page(r.headers["location"])).text
        again = await ops.post(lift, {})
        assert again.status_code == 409, again.text
    assert (await stack.get(f"/disruptions/{d['id']}")).json()["status"] != "active"
