"""The console's second round over HTTP (httpx, in-process app, real PostgreSQL and
Temporal): production orders with complete, carrier exceptions with lost / wait, amending
from the order page, and the KPI page's weekly trends."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from activities.shipping import SimulatedCarrier
from db.kpis import KpiFilter, compute_kpis, refresh_facts, weekly_trends
from db.models import Order, OrderEvent, OrderLine
from tests.api.test_production import _made_to_order
from tests.api.test_ui import console
from tests.utils import Stack, until
from workers.main import order_worker


async def test_production_orders_listed_for_staff_completed_by_ops(stack: Stack):
    customer = await stack.customer()
    custom = await _made_to_order(stack)
    order_id = (await stack.order(customer, [(custom, 2)])).json()["id"]
    await stack.wait_status(order_id, "backordered")
    (prod,) = [
        p for p in (await stack.get("/production-orders")).json() if p["order_id"] == order_id
    ]
    complete = f"/ui/production/{prod['id']}/complete"
    async with console(stack, "sales") as sales, console(stack, "ops") as ops:
        page = await sales.page("/ui/production")
        assert page.status_code == 200 and order_id in page.text and custom in page.text
        assert f'action="{complete}"' not in page.text and 'href="/ui/production"' in page.text
        refused = await sales.post(complete, {})
        assert refused.status_code == 403 and "admin, ops" in refused.text

        page = await ops.page("/ui/production")
        assert f'action="{complete}"' in page.text and 'href="/ui/exceptions"' in page.text
        assert (await ops.post(complete, {}, csrf=False)).status_code == 403
        r = await ops.post(complete, {})
        assert r.status_code == 303, r.text
        done = await ops.page(r.headers["location"])
        assert f"Production order #{prod['id']} completed" in done.text
        assert order_id not in done.text, "no longer open"
        again = await ops.post(complete, {})
        assert again.status_code == 409
        assert f"production order {prod['id']} is completed" in again.text
        listed = await ops.page("/ui/production?status=completed")
        assert order_id in listed.text and "ops-" in listed.text  # completed by
        assert (await ops.post("/ui/production/999999999/complete", {})).status_code == 404
        assert (await ops.page("/ui/production?status=lost")).status_code == 422
    await stack.wait_status(order_id, "completed")


async def test_carrier_exceptions_listed_for_ops_called_lost_or_waited(api_stack: Stack):
    stack = api_stack
    carrier = SimulatedCarrier(transit_seconds=0, mode="exception")
    async with order_worker(stack.client, stack.sessions, stack.settings, carrier=carrier):
        customer = await stack.customer()
        sku = await stack.product(price="10.00", stock=10)
        lost = (await stack.order(customer, [(sku, 2)])).json()["id"]
        kept = (await stack.order(customer, [(sku, 1)])).json()["id"]
        async with console(stack, "ops") as ops, console(stack, "sales") as sales:

            async def both_listed() -> bool:
                text = (await ops.page("/ui/exceptions")).text
                return lost in text and kept in text

            await until(both_listed, "both orders on the exceptions page")
            page = await ops.page("/ui/exceptions")
            tracking = (await stack.get(f"/orders/{lost}")).json()["shipments"][0]
            assert tracking["tracking_number"] in page.text
            assert f'action="/ui/orders/{lost}/carrier-exception"' in page.text
            assert (await sales.page("/ui/exceptions")).status_code == 403
            forged = await sales.post(f"/ui/orders/{lost}/carrier-exception", {"action": "lost"})
            assert forged.status_code == 403

            bad = await ops.post(f"/ui/orders/{lost}/carrier-exception", {"action": "burn"})
            assert bad.status_code == 422 and "action" in bad.text
            r = await ops.post(
                f"/ui/orders/{lost}/carrier-exception",
                {"action": "lost", "comment": "carrier confirms"},
            )
            assert r.status_code == 303, r.text
            done = await ops.page(r.headers["location"])
            assert f"Order {lost}: Called lost" in done.text
            order = await stack.wait_status(lost, "failed")
            assert order["invoice"]["credited"] is True
            page = await ops.page("/ui/exceptions")
            assert f'href="/ui/orders/{lost}"' not in page.text, "a failed order is not open"
            again = await ops.post(f"/ui/orders/{lost}/carrier-exception", {"action": "lost"})
            assert again.status_code == 409 and '<p class="msg error"' in again.text

            r = await ops.post(
                f"/ui/orders/{kept}/carrier-exception", {"action": "wait", "comment": "tracing"}
            )
            assert r.status_code == 303, r.text
            assert "Kept waiting" in (await ops.page(r.headers["location"])).text
            history = (await stack.get(f"/orders/{kept}")).json()["timeline"]
            assert any("keeps waiting" in e["detail"] and "tracing" in e["detail"] for e in history)
        cancel = await stack.post(f"/orders/{kept}/cancel", {"reason": "test over"}, role="ops")
        assert cancel.status_code in (200, 202, 409), cancel.text


QTY = re.compile(r'name="qty_(\d+)"')


async def test_sales_amend_from_the_order_page_every_problem_a_sentence(stack: Stack):
    customer = await stack.customer(limit="100.00")
    boxed = await stack.product(price="10.00", floor="1.00", pack=5, moq=5)
    loose = await stack.product(price="2.00", floor="1.00")
    order_id = (await stack.order(customer, [(boxed, 10), (loose, 3)])).json()["id"]
    await stack.wait_status(order_id, "awaiting_approval")
    path = f"/ui/orders/{order_id}/amend"
    async with console(stack, "sales") as sales, console(stack, "credit_controller") as cc:
        page = await cc.page(f"/ui/orders/{order_id}")
        assert f'action="{path}"' not in page.text
        assert (await cc.post(path, {"qty_1": "5"})).status_code == 403

        page = await sales.page(f"/ui/orders/{order_id}")
        assert f'action="{path}"' in page.text and QTY.findall(page.text) == ["1", "2"]
        form = {"qty_1": "10", "qty_2": "3", "line1": "", "requested_delivery_date": ""}
        same = await sales.post(path, form)
        assert same.status_code == 422 and "nothing changed" in same.text

        wrong = await sales.post(path, {**form, "qty_1": "3", "qty_2": "x"})
        assert wrong.status_code == 422 and "line 2 (" + loose in wrong.text
        assert "is not a whole number" in wrong.text

        wrong = await sales.post(path, {**form, "qty_1": "3", "qty_2": "0"})
        assert wrong.status_code == 422, wrong.text
        problems = re.findall(r"<li>(line 1 \(.*?)</li>", wrong.text)
        assert len(problems) == 2, wrong.text  # below the minimum and not a pack multiple
        assert any("minimum" in p for p in problems) and any("pack size" in p for p in problems)
        assert 'value="3"' in wrong.text, "what was typed stays in the form"

        day = (date.today() + timedelta(days=30)).isoformat()
        moved = {
            **form,
            "qty_1": "15",
            "qty_2": "0",
            "requested_delivery_date": day,
            "line1": "9 New Rd",
            "city": "Suzhou",
            "postal_code": "215000",
            "country": "CN",
            "comment": "customer called",
        }
        r = await sales.post(path, moved)
        assert r.status_code == 303, r.text
        page = await sales.page(r.headers["location"])
        assert "Amended." in page.text and QTY.findall(page.text) == ["1"]
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert [(ln["sku"], ln["quantity"]) for ln in order["lines"]] == [(boxed, 15)]
    assert order["requested_delivery_date"] == day and order["ship_to"]["city"] == "Suzhou"
    assert order["status"] == "awaiting_approval" and order["total"] == "150.00"

    cancelled = await stack.post(f"/orders/{order_id}/cancel", {"reason": "done"}, role="sales")
    assert cancelled.status_code == 200
    async with console(stack, "sales") as sales:
        page = await sales.page(f"/ui/orders/{order_id}")
        assert f'action="{path}"' not in page.text, "an ended order offers no change"
        late = await sales.post(path, {"qty_1": "20"})
        assert late.status_code == 409 and "can no longer change" in late.text


async def _order_at(stack: Stack, channel: str, customer: str, sku: str, **o: object) -> None:
    """An order written straight into the tables, with a timeline at chosen times."""
    at: datetime = o["at"]
    order_id = f"TR-{uuid.uuid4().hex[:10]}"
    qty, shipped = o["qty"], o["shipped"]
    async with stack.sessions() as s:
        s.add(
            Order(
                id=order_id,
                customer_code=customer,
                channel=channel,
                status=o["statuses"][-1],
                subtotal=Decimal(qty),
                total=Decimal(qty),
                currency="CNY",
                ship_to={},
                requested_delivery_date=o.get("due"),
                price_rules_version="t",
                created_by="t",
                created_at=at,
            )
        )
        await s.flush()
        s.add(
            OrderLine(
                order_id=order_id,
                line_no=1,
                sku=sku,
                quantity=qty,
                list_price=Decimal(1),
                unit_price=Decimal(1),
                line_total=Decimal(qty),
                price_rule="list",
                shipped_qty=shipped,
            )
        )
        for i, status in enumerate(o["statuses"]):
            s.add(
                OrderEvent(
                    order_id=order_id,
                    step_key=f"t:{status}",
                    status=status,
                    kind="status",
                    at=at + timedelta(hours=i),
                )
            )
        await refresh_facts(s, [order_id])  # a hand-written timeline: its KPI facts
        await s.commit()


async def test_kpi_trends_per_week_add_up_to_the_totals(api_stack: Stack):
    stack = api_stack
    channel = f"tr-{uuid.uuid4().hex[:8]}"
    customer, sku = await stack.customer(), await stack.product()
    now = datetime.now(UTC)
    monday = datetime.combine(now.date() - timedelta(days=now.weekday()), datetime.min.time(), UTC)
    old = monday - timedelta(weeks=3) + timedelta(hours=12)
    ok = "received validated approved shipped delivered".split()
    await _order_at(
        stack, channel, customer, sku, at=old, qty=10, shipped=10, statuses=ok, due=old.date()
    )
    routed = "received validated awaiting_approval approved".split()
    await _order_at(stack, channel, customer, sku, at=old, qty=10, shipped=5, statuses=routed)
    first = "received validated approved".split()
    await _order_at(stack, channel, customer, sku, at=now, qty=4, shipped=0, statuses=first)

    f = KpiFilter(channel=channel)
    async with stack.sessions() as s:
        weeks = await weekly_trends(s, f)
        totals = await compute_kpis(s, f)
    assert [w["week"] for w in weeks] == [
        (monday - timedelta(weeks=k)).date() for k in (3, 2, 1, 0)
    ]
    assert [w["orders"] for w in weeks] == [2, 0, 0, 1]
    assert weeks[0] | {"week": None} == {
        "week": None,
        "orders": 2,
        "first_pass_rate": 0.5,
        "fill_rate": 0.75,
        "on_time_delivery_rate": 1.0,  # delivered on its due day
    }
    assert weeks[1]["first_pass_rate"] is None and weeks[3]["fill_rate"] == 0.0
    assert sum(w["orders"] for w in weeks) == totals["orders_received"] == 3
    assert totals["first_pass_rate"] == round(2 / 3, 4) and totals["fill_rate"] == 0.625

    async with console(stack, "director") as c:
        r = await c.page(f"/ui/kpis?channel={channel}")
        assert r.status_code == 200 and "Week by week" in r.text
        assert r.text.count("<polyline") >= 2 and "Orders received per week" in r.text
        assert "first-pass <strong>100%</strong>" in r.text  # this week's value, in the legend
        empty = await c.page(f"/ui/kpis?channel={channel}-none")
        assert empty.status_code == 200 and "Week by week" not in empty.text
