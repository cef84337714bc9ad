"""Returns (RMA) on the real stack: requested through the API, run by ReturnWorkflow,
stock and money checked in PostgreSQL after each path."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

from activities.billing import credit_invoice
from db.models import (
    CreditNote,
    CustomerNotice,
    HeldStock,
    Invoice,
    Receivable,
    Return,
    ReturnLineRow,
    Stock,
)
from orderflow.embedded import EmbeddedPostgres
from services.config import Settings
from services.notices import NoticeSender
from services.recovery import Recovery
from tests import conftest
from tests.utils import Stack, assert_books_balance, until


@pytest.fixture
def settings(pg: EmbeddedPostgres, tmp_path: Path) -> Settings:
    # Returns above 50.00 wait for a sales manager; everything here is delivered today.
    # Stranded returns are started by the recovery loop after 1 s (not 10).
    return conftest.test_settings(
        pg,
        returns_auto_amount=Decimal("50.00"),
        recovery_grace_seconds=1.0,
        notice_outbox=tmp_path / "outbox",
    )


async def _completed(stack: Stack, units: int, price: str = "10.00") -> tuple[str, str]:
    customer = await stack.customer()
    sku = await stack.product(price=price, floor="1.00", stock=100)
    r = await stack.order(customer, [(sku, units)])
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    await stack.wait_status(order_id, "completed")
    return order_id, sku


async def _ask(
    stack: Stack, order_id: str, lines: list[tuple[str, int]], reason: str = "not_needed", **kw: Any
) -> Any:
    body = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "reason": reason}
    return await stack.post(f"/orders/{order_id}/returns", body, role="sales", **kw)


async def _wait_return(stack: Stack, rma_id: str, *statuses: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        found = (await stack.get(f"/returns/{rma_id}")).json()
        return found["status"] in statuses

    await until(reached, f"return {rma_id} in {statuses}", within=30)
    return found


async def _receive(stack: Stack, rma_id: str, lines: list[tuple[str, int, str]]) -> Any:
    body = {"lines": [{"sku": s, "quantity": q, "condition": c} for s, q, c in lines]}
    return await stack.post(f"/returns/{rma_id}/receive", body, role="ops")


async def _receivable(stack: Stack, order_id: str) -> Decimal:
    async with stack.sessions() as s:
        total = Decimal(0)
        for r in await s.scalars(
            select(Receivable)
            .join(Invoice, Invoice.number == Receivable.invoice_number)
            .where(Invoice.order_id == order_id)
        ):
            total += r.open_amount
        return total


async def _stock(stack: Stack, sku: str) -> tuple[int, int, dict[str, int]]:
    async with stack.sessions() as s:
        row = await s.get_one(Stock, sku)
        held = {
            h.location: h.quantity
            for h in await s.scalars(select(HeldStock).where(HeldStock.sku == sku))
        }
        return row.on_hand - row.reserved, row.shipped, held


async def test_full_return_auto_approved_restocked_and_credited(stack: Stack):
    order_id, sku = await _completed(stack, 2)
    invoice = (await stack.get(f"/orders/{order_id}")).json()["invoice"]
    assert Decimal(invoice["amount"]) == Decimal("20.00")

    r = await _ask(stack, order_id, [(sku, 2)], headers={"Idempotency-Key": "rma-full-1"})
    assert r.status_code == 201, r.text
    rma_id = r.json()["id"]
    approved = await _wait_return(stack, rma_id, "approved")
    assert approved["amount"] == "20.00" and approved["decided_by"] == "system"

    # The same key and body: the same return, no second one; another body: 422.
    again = await _ask(stack, order_id, [(sku, 2)], headers={"Idempotency-Key": "rma-full-1"})
    assert again.status_code == 201 and again.json()["id"] == rma_id, again.text
    assert await stack.count(Return, Return.order_id == order_id) == 1
    other = await _ask(stack, order_id, [(sku, 1)], headers={"Idempotency-Key": "rma-full-1"})
    assert other.status_code == 422, other.text
    # Nothing is left to return: the line is named.
    more = await _ask(stack, order_id, [(sku, 1)])
    assert more.status_code == 422, more.text
    assert more.json()["detail"][0]["loc"] == ["body", "lines", 0, "quantity"]
    assert "only 0 can be returned" in more.json()["detail"][0]["message"]

    available_before, _, _ = await _stock(stack, sku)
    done = await _receive(stack, rma_id, [(sku, 2, "restock")])
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed", body
    assert sum(Decimal(c["amount"]) for c in body["credit_notes"]) == Decimal(invoice["amount"])
    assert body["credit_notes"][0]["invoice_number"] == invoice["number"]
    assert await _receivable(stack, order_id) == Decimal("0.00")
    available, _, held = await _stock(stack, sku)
    assert available == available_before + 2 and held == {}
    await assert_books_balance(stack, sku)

    order = (await stack.get(f"/orders/{order_id}")).json()
    assert [x["id"] for x in order["returns"]] == [rma_id]
    steps = [e["detail"] for e in order["timeline"] if e["kind"] == "return"]
    for status in ("requested", "approved", "received", "credited", "completed"):
        assert any(d.startswith(f"return {rma_id} {status}") for d in steps), steps
    # After shipment the cancel answers 409 and names the returns endpoint.
    r = await stack.post(f"/orders/{order_id}/cancel", {"reason": "too late"}, role="sales")
    assert r.status_code == 409 and f"/orders/{order_id}/returns" in r.json()["detail"]
    # A return whose goods came back cannot be cancelled any more.
    r = await stack.post(f"/returns/{rma_id}/cancel", {"reason": "too late"}, role="sales")
    assert r.status_code == 409 and "completed" in r.json()["detail"], r.text

    kpis = (await stack.get("/kpis")).json()["returns"]
    assert kpis["rate_by_product"][sku] == {"shipped": 2, "returned": 2, "rate": 1.0}
    assert kpis["by_reason"]["not_needed"]["units"] >= 2


async def test_partial_return_to_scrap_then_the_rest(stack: Stack):
    order_id, sku = await _completed(stack, 3)
    available_before, shipped_before, _ = await _stock(stack, sku)

    rma = (await _ask(stack, order_id, [(sku, 1)], reason="damaged")).json()
    await _wait_return(stack, rma["id"], "approved")
    done = (await _receive(stack, rma["id"], [(sku, 1, "scrap")])).json()
    assert done["status"] == "completed", done
    assert done["credited_amount"] == "10.00"
    # Scrapped: not back in available stock, held in the scrap location; credit issued.
    available, shipped, held = await _stock(stack, sku)
    assert (available, shipped, held) == (available_before, shipped_before, {"scrap": 1})
    assert await _receivable(stack, order_id) == Decimal("20.00")
    await assert_books_balance(stack, sku)

    # The rest: one unit restocked, one quarantined; the order is then fully credited.
    rest = (await _ask(stack, order_id, [(sku, 2)], reason="defective")).json()
    await _wait_return(stack, rest["id"], "approved")
    r = await _receive(stack, rest["id"], [(sku, 1, "restock"), (sku, 1, "quarantine")])
    assert r.json()["status"] == "completed", r.text
    assert await _receivable(stack, order_id) == Decimal("0.00")
    available, _, held = await _stock(stack, sku)
    assert available == available_before + 1 and held == {"scrap": 1, "quarantine": 1}
    await assert_books_balance(stack, sku)
    kpis = (await stack.get("/kpis")).json()["returns"]
    assert kpis["by_reason"]["damaged"]["units"] >= 1


async def test_a_large_return_waits_for_a_sales_manager(stack: Stack):
    order_id, sku = await _completed(stack, 10)  # 100.00: above the 50.00 of this module

    rma = (await _ask(stack, order_id, [(sku, 10)])).json()
    waiting = await _wait_return(stack, rma["id"], "awaiting_approval")
    assert waiting["awaiting_role"] == "sales_manager"
    assert "above 50.00" in waiting["approval_reason"]
    listed = (await stack.get("/returns?status=awaiting_approval", role="sales_manager")).json()
    assert rma["id"] in [x["id"] for x in listed]
    early = await _receive(stack, rma["id"], [(sku, 10, "restock")])
    assert early.status_code == 409, early.text
    wrong = await stack.post(
        f"/returns/{rma['id']}/decision", {"decision": "approve"}, role="director"
    )
    assert wrong.status_code == 403, wrong.text
    r = await stack.post(
        f"/returns/{rma['id']}/decision",
        {"decision": "reject", "comment": "used goods"},
        role="sales_manager",
    )
    assert r.status_code == 200 and r.json()["status"] == "refused", r.text
    assert r.json()["decision_comment"] == "used goods"
    assert await _receivable(stack, order_id) == Decimal("100.00")

    # Refused quantities are free again: a smaller return, approved by the manager.
    again = (await _ask(stack, order_id, [(sku, 6)])).json()
    await _wait_return(stack, again["id"], "awaiting_approval")
    r = await stack.post(
        f"/returns/{again['id']}/decision", {"decision": "approve"}, role="sales_manager"
    )
    assert r.json()["status"] == "approved", r.text
    r = await _receive(stack, again["id"], [(sku, 6, "restock")])
    assert r.json()["status"] == "completed" and r.json()["credited_amount"] == "60.00"
    assert await _receivable(stack, order_id) == Decimal("40.00")
    await assert_books_balance(stack, sku)


async def test_a_credit_that_cannot_be_written_undoes_the_restock(stack: Stack):
    order_id, sku = await _completed(stack, 2)
    available_before, _, _ = await _stock(stack, sku)
    rma = (await _ask(stack, order_id, [(sku, 2)])).json()
    await _wait_return(stack, rma["id"], "approved")
    # Meanwhile the whole invoice was credited (a lost-shipment compensation, say).
    async with stack.sessions() as s, s.begin():
        inv = await s.scalar(select(Invoice).where(Invoice.order_id == order_id))
        assert inv is not None
        await credit_invoice(s, inv, "credited by hand")

    r = await _receive(stack, rma["id"], [(sku, 2, "restock")])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled", r.json()
    assert "left uncredited" in r.json()["failure_reason"], r.json()
    # The restocked units went on to quarantine: not sold twice, books still balance.
    available, _, held = await _stock(stack, sku)
    assert available == available_before and held == {"quarantine": 2}
    await assert_books_balance(stack, sku)
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert any("restock undone" in e["detail"] for e in order["timeline"])


async def test_an_undecided_return_is_refused_at_the_timeout(
    ts_stack: Stack, time_env: WorkflowEnvironment
):
    stack = ts_stack
    customer = await stack.customer()
    sku = await stack.product(price="10.00", floor="1.00", stock=500)
    order_id = (await stack.order(customer, [(sku, 200)])).json()["id"]  # 2,000.00
    await stack.wait_status(order_id, "invoiced", "delivered", "completed")
    rma = (await _ask(stack, order_id, [(sku, 150)])).json()
    waiting = await _wait_return(stack, rma["id"], "awaiting_approval")
    assert waiting["awaiting_role"] == "sales_manager"

    async def reminders() -> list[str]:
        order = (await stack.get(f"/orders/{order_id}")).json()
        return [e["detail"] for e in order["timeline"] if "reminder" in e["detail"]]

    # One reminder to the approver role at ORDERFLOW_APPROVAL_REMINDER_SECONDS (4 h) ...
    assert await reminders() == []
    await time_env.sleep(timedelta(hours=4, minutes=1))

    async def reminded() -> bool:
        return len(await reminders()) == 1

    await until(reminded, "the return's reminder", within=30)
    assert "reminder sent to sales_manager" in (await reminders())[0]
    assert (await stack.get(f"/returns/{rma['id']}")).json()["status"] == "awaiting_approval"
    # ... and the timeout still counts from the start: refused at 72 h, reminded once.
    await time_env.sleep(timedelta(hours=68, minutes=1))
    refused = await _wait_return(stack, rma["id"], "refused")
    assert refused["decided_by"] == "system"
    order = (await stack.get(f"/orders/{order_id}")).json()
    assert any("approval timeout" in e["detail"] for e in order["timeline"])
    assert len(await reminders()) == 1


async def test_a_whole_invoice_credit_after_a_return_credits_only_the_rest(stack: Stack):
    """A lost-shipment compensation after a partial return: the credit notes add up to the
    invoice, never more."""
    order_id, sku = await _completed(stack, 4)  # 40.00
    rma = (await _ask(stack, order_id, [(sku, 1)])).json()
    await _wait_return(stack, rma["id"], "approved")
    r = await _receive(stack, rma["id"], [(sku, 1, "restock")])
    assert r.json()["status"] == "completed", r.text
    assert await _receivable(stack, order_id) == Decimal("30.00")
    async with stack.sessions() as s, s.begin():
        inv = await s.scalar(select(Invoice).where(Invoice.order_id == order_id))
        assert inv is not None
        assert await credit_invoice(s, inv, "shipment lost") is True
        assert await credit_invoice(s, inv, "shipment lost") is False  # once
    async with stack.sessions() as s:
        credited = await s.scalar(
            select(func.sum(CreditNote.amount)).where(CreditNote.invoice_number == inv.number)
        )
    assert credited == Decimal("40.00")
    assert await _receivable(stack, order_id) == Decimal("0.00")


async def test_a_return_is_cancelled_before_its_goods_arrive(stack: Stack):
    order_id, sku = await _completed(stack, 10)  # 100.00
    # Awaiting approval: cancelled by sales, the decision is then a 409.
    big = (await _ask(stack, order_id, [(sku, 10)])).json()
    await _wait_return(stack, big["id"], "awaiting_approval")
    bad = await stack.post(f"/returns/{big['id']}/cancel", {"reason": ""}, role="sales")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "reason"]
    wrong = await stack.post(f"/returns/{big['id']}/cancel", {"reason": "x"}, role="director")
    assert wrong.status_code == 403, wrong.text
    r = await stack.post(
        f"/returns/{big['id']}/cancel", {"reason": "customer keeps them"}, role="sales"
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["failure_reason"] == "customer keeps them"
    late = await stack.post(
        f"/returns/{big['id']}/decision", {"decision": "approve"}, role="sales_manager"
    )
    assert late.status_code == 409, late.text
    again = await stack.post(f"/returns/{big['id']}/cancel", {"reason": "twice"}, role="ops")
    assert again.status_code == 409, again.text

    # Approved, goods not in yet: cancelled by ops; the receipt is then refused, nothing
    # moved, nothing credited, and the units can be asked for again.
    available_before, shipped_before, _ = await _stock(stack, sku)
    small = (await _ask(stack, order_id, [(sku, 2)])).json()
    await _wait_return(stack, small["id"], "approved")
    r = await stack.post(f"/returns/{small['id']}/cancel", {"reason": "wrong RMA"}, role="ops")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    handle = stack.client.get_workflow_handle(f"return-{small['id']}")
    assert (await handle.result())["status"] == "cancelled"
    assert (await _receive(stack, small["id"], [(sku, 2, "restock")])).status_code == 409
    assert await _stock(stack, sku) == (available_before, shipped_before, {})
    assert await _receivable(stack, order_id) == Decimal("100.00")
    assert (await _ask(stack, order_id, [(sku, 10)])).status_code == 201
    order = (await stack.get(f"/orders/{order_id}")).json()
    cancelled = [e["detail"] for e in order["timeline"] if "cancelled by" in e["detail"]]
    assert len(cancelled) == 2, cancelled
    await assert_books_balance(stack, sku)


async def test_a_return_stored_while_temporal_was_down_is_started_by_recovery(stack: Stack):
    order_id, sku = await _completed(stack, 2)
    # What POST /orders/{id}/returns stores before it starts the workflow (the start then
    # failed: Temporal down, and no Idempotency-Key for the caller to retry with).
    rma_id = f"RMA-S{uuid.uuid4().hex[:8]}"
    async with stack.sessions() as s, s.begin():
        s.add(
            Return(
                id=rma_id,
                order_id=order_id,
                status="requested",
                reason="damaged",
                amount=Decimal("10.00"),
                days_since_delivery=0,
                requested_by="sales",
                created_at=datetime.now(UTC) - timedelta(seconds=5),
            )
        )
        await s.flush()
        s.add(ReturnLineRow(return_id=rma_id, sku=sku, quantity=1, unit_price=Decimal("10.00")))
    early = await stack.post(f"/returns/{rma_id}/cancel", {"reason": "x"}, role="sales")
    assert early.status_code == 503, early.text  # no workflow yet: retry later

    recovery = Recovery(stack.sessions, stack.client, stack.settings)
    assert f"return-{rma_id}" in await recovery.sweep()
    approved = await _wait_return(stack, rma_id, "approved")
    assert approved["decided_by"] == "system"
    assert f"return-{rma_id}" not in await recovery.sweep()  # no longer `requested`
    done = await _receive(stack, rma_id, [(sku, 1, "restock")])
    assert done.json()["status"] == "completed", done.text
    assert await _receivable(stack, order_id) == Decimal("10.00")


async def test_the_customer_hears_of_each_return_step_once(stack: Stack):
    customer = await stack.customer()
    r = await stack.put(
        f"/customers/{customer}/contact", {"email": f"{customer.lower()}@example.com"}
    )
    assert r.status_code == 200, r.text
    sku = await stack.product(price="10.00", floor="1.00", stock=100)
    order_id = (await stack.order(customer, [(sku, 10)])).json()["id"]
    await stack.wait_status(order_id, "completed")

    ok = (await _ask(stack, order_id, [(sku, 3)])).json()  # 30.00: approved by rule
    await _wait_return(stack, ok["id"], "approved")
    done = (await _receive(stack, ok["id"], [(sku, 3, "restock")])).json()
    assert done["status"] == "completed" and done["credited_amount"] == "30.00", done
    big = (await _ask(stack, order_id, [(sku, 7)])).json()  # 70.00: a manager refuses
    await _wait_return(stack, big["id"], "awaiting_approval")
    r = await stack.post(
        f"/returns/{big['id']}/decision",
        {"decision": "reject", "comment": "Opened and used."},
        role="sales_manager",
    )
    assert r.json()["status"] == "refused", r.text

    async with httpx.AsyncClient() as http:
        sender = NoticeSender(stack.sessions, stack.settings, http)
        while await sender.send_due():
            pass
    async with stack.sessions() as s:
        rows = (
            await s.scalars(
                select(CustomerNotice).where(
                    CustomerNotice.order_id == order_id, CustomerNotice.event.like("return_%")
                )
            )
        ).all()
    got = {(n.event_key, n.receiver): n for n in rows}
    assert sorted(got) == sorted(
        [
            (f"return_approved:{ok['id']}", "email"),
            (f"return_credited:{ok['id']}", "email"),
            (f"return_refused:{big['id']}", "email"),
        ]
    ), sorted(got)
    assert all(n.status == "sent" for n in rows), [(n.event_key, n.last_error) for n in rows]
    approved = got[(f"return_approved:{ok['id']}", "email")]
    assert approved.subject == f"Return {ok['id']} for order {order_id} is approved"
    assert f"write {ok['id']} clearly" in (approved.body or "")
    assert f"{sku} x 3" in (approved.body or "")
    credited = got[(f"return_credited:{ok['id']}", "email")]
    note = done["credit_notes"][0]["number"]
    assert "30.00" in (credited.subject or "") and note in (credited.body or "")
    refused = got[(f"return_refused:{big['id']}", "email")]
    assert "Opened and used." in (refused.body or "")
    outbox = stack.settings.notice_outbox
    assert outbox is not None and len(list(outbox.glob("*.eml"))) >= 3
