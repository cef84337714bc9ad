"""Signed channel webhooks: signatures, both mappings, dedup under concurrent delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx

from db.models import Order
from domain.channels import sign
from tests.utils import Stack


async def _channel(stack: Stack, name: str, mapping: str, customer: str | None = None) -> str:
    r = await stack.post(
        "/channels", {"name": name, "mapping": mapping, "default_customer_code": customer}
    )
    assert r.status_code == 201, r.text
    listed = (await stack.get("/channels")).json()
    assert all("secret" not in c for c in listed), "a secret is never shown again"
    return r.json()["secret"]


async def _deliver(
    stack: Stack,
    channel: str,
    secret: str,
    payload: dict,
    ts: int | None = None,
    signature: str | None = None,
):
    body = json.dumps(payload).encode()
    stamp = str(ts if ts is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Orderflow-Timestamp": stamp,
        "X-Orderflow-Signature": signature or sign(secret, stamp, body),
    }
    return await stack.http.post(f"/channels/{channel}/orders", content=body, headers=headers)


async def test_generic_webhook_signature_checks(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    name = f"shop-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "generic")
    payload = {
        "external_id": "G-1",
        "customer_code": customer,
        "lines": [{"sku": sku, "quantity": 2}],
    }
    stale = await _deliver(stack, name, secret, payload, ts=int(time.time()) - 301)
    assert stale.status_code == 401 and "replay" in stale.json()["detail"]
    forged = await _deliver(stack, name, secret, payload, signature="sha256=" + "0" * 64)
    assert forged.status_code == 401
    missing = await stack.http.post(f"/channels/{name}/orders", json=payload)
    assert missing.status_code == 401 and "missing" in missing.json()["detail"]
    assert await stack.count(Order, Order.channel == name) == 0

    ok = await _deliver(stack, name, secret, payload)
    assert ok.status_code == 201, ok.text
    order = await stack.wait_status(ok.json()["id"], "completed")
    assert order["channel"] == name and order["external_ref"] == "G-1"
    changed = await _deliver(
        stack, name, secret, {**payload, "lines": [{"sku": sku, "quantity": 3}]}
    )
    assert changed.status_code == 409


async def test_concurrent_duplicate_deliveries_make_one_order(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    name = f"mkt-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "generic", customer)
    payload = {"external_id": "DUP-9", "lines": [{"sku": sku, "quantity": 1}]}
    answers = await asyncio.gather(*[_deliver(stack, name, secret, payload) for _ in range(12)])
    assert {r.status_code for r in answers} == {201}
    assert len({json.dumps(r.json(), sort_keys=True) for r in answers}) == 1
    assert await stack.count(Order, Order.channel == name) == 1


async def test_webshop_mapping_and_bad_payloads(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    name = f"web-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "webshop")
    shop_order = {
        "id": 450789469,
        "name": "#1001",
        "note": "leave at reception",
        "customer": {"id": customer, "email": "buyer@example.com"},
        "line_items": [{"sku": sku, "quantity": 3, "price": "10.00", "title": "Widget"}],
        "shipping_address": {
            "address1": "8 Harbour Rd",
            "city": "Ningbo",
            "zip": "315000",
            "country_code": "CN",
        },
    }
    r = await _deliver(stack, name, secret, shop_order)
    assert r.status_code == 201, r.text
    order = (await stack.get(f"/orders/{r.json()['id']}")).json()
    assert order["external_ref"] == "#1001" and order["customer_code"] == customer
    assert order["ship_to"] == {
        "line1": "8 Harbour Rd",
        "city": "Ningbo",
        "postal_code": "315000",
        "country": "CN",
    }
    assert order["special_instructions"] == "leave at reception"
    bad = await _deliver(
        stack,
        name,
        secret,
        {"id": 1, "customer": {"id": customer}, "line_items": [{"sku": sku, "quantity": "x"}]},
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "lines", 0, "quantity"]
    empty = await _deliver(stack, name, secret, {"id": 2})
    assert empty.status_code == 422 and empty.json()["detail"][0]["code"] == "missing"
    assert (await _deliver(stack, "no-such-channel", secret, shop_order)).status_code == 404


async def test_bodies_over_the_limit_are_refused_before_they_are_read(stack: Stack):
    customer = await stack.customer()
    name = f"big-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "generic", customer)
    limit = stack.settings.webhook_max_bytes
    url = f"/channels/{name}/orders"
    stamp = str(int(time.time()))

    async def post(body: bytes | AsyncIterator[bytes], **headers: str) -> httpx.Response:
        signed = sign(secret, stamp, body) if isinstance(body, bytes) else "sha256=" + "0" * 64
        return await stack.http.post(
            url,
            content=body,
            headers={"X-Orderflow-Timestamp": stamp, "X-Orderflow-Signature": signed, **headers},
        )

    # Declared too big: refused on the header alone (the 2 bytes sent are never looked at).
    declared = await post(b"{}", **{"Content-Length": str(10 * 2**30)})
    assert declared.status_code == 413, declared.text
    assert f"the limit is {limit}" in declared.json()["detail"]
    # Correctly declared, and signed: still too big.
    big = json.dumps({"external_id": "B-1", "lines": [], "pad": "x" * limit}).encode()
    assert (await post(big)).status_code == 413
    # No Content-Length (chunked), or one that lies: the cap holds while streaming.

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    chunked = await post(chunks())
    assert chunked.status_code == 413 and "over the limit" in chunked.json()["detail"]
    lying = await post(big, **{"Content-Length": "10"})
    assert lying.status_code == 413, lying.text
    assert (await post(b"{}", **{"Content-Length": "ten"})).status_code == 400
    assert await stack.count(Order, Order.channel == name) == 0


async def test_malformed_signature_headers_are_401_with_the_reason(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    name = f"hdr-{customer[-6:].lower()}"
    secret = await _channel(stack, name, "generic", customer)
    payload = {"external_id": "H-1", "lines": [{"sku": sku, "quantity": 1}]}
    huge = await _deliver(stack, name, secret, payload, ts=int("9" * 400))
    assert huge.status_code == 401 and "unix seconds" in huge.json()["detail"]
    body = json.dumps(payload).encode()
    non_ascii = await stack.http.post(
        f"/channels/{name}/orders",
        content=body,
        headers={
            "X-Orderflow-Timestamp": str(int(time.time())),
            "X-Orderflow-Signature": ("sha256=" + "é" * 64).encode(),
        },
    )
    assert non_ascii.status_code == 401, non_ascii.text
    assert "64 hex digits" in non_ascii.json()["detail"]
    assert await stack.count(Order, Order.channel == name) == 0
    assert (await _deliver(stack, name, secret, payload)).status_code == 201


async def test_webhook_fields_of_the_wrong_shape_are_422_naming_the_field(stack: Stack):
    customer = await stack.customer()
    sku = await stack.product()
    shop = f"shape-{customer[-6:].lower()}"
    secret = await _channel(stack, shop, "webshop", customer)
    good = {"id": 7, "line_items": [{"sku": sku, "quantity": 1}]}
    cases = [
        ({**good, "shipping_address": "8 Harbour Rd, Ningbo"}, ["body", "shipping_address"]),
        ({**good, "line_items": 3}, ["body", "line_items"]),
        ({**good, "line_items": [{"sku": sku, "quantity": 1}, "two"]}, ["body", "line_items", 1]),
        ({**good, "customer": "C-1"}, ["body", "customer"]),
        ({**good, "customer": {"id": {"x": 1}}}, ["body", "customer", "id"]),
        ({**good, "id": {"nested": True}}, ["body", "id"]),
    ]
    for payload, loc in cases:
        r = await _deliver(stack, shop, secret, payload)
        assert r.status_code == 422, (payload, r.text)
        assert [p["loc"] for p in r.json()["detail"]] == [loc], r.json()
    generic = f"gshape-{customer[-6:].lower()}"
    gsecret = await _channel(stack, generic, "generic", customer)
    r = await _deliver(stack, generic, gsecret, {"external_id": [1], "lines": good["line_items"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "external_id"]
    deep, stamp = b"[" * 100_000 + b"]" * 100_000, str(int(time.time()))
    r = await stack.http.post(
        f"/channels/{generic}/orders",
        content=deep,
        headers={
            "X-Orderflow-Timestamp": stamp,
            "X-Orderflow-Signature": sign(gsecret, stamp, deep),
        },
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    assert await stack.count(Order, Order.channel.in_([shop, generic])) == 0
