"""Channel webhooks: signatures, and the mappings from a channel's shape to an order."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import ValidationError

from orderflow.domain.payloads import OrderIn, Problem

MAX_SKEW_SECONDS = 300
MAPPINGS = ("generic", "webshop")


def derive_secret(server_key: str, channel: str, nonce: str) -> str:
    """The channel's signing secret, computed from the deployment key and a stored nonce."""
    digest = hmac.new(server_key.encode(), f"{channel}:{nonce}".encode(), hashlib.sha256)
    return "whsec_" + digest.hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + raw body)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def check_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """None when the delivery is authentic and fresh, else why not."""
    if not timestamp or not signature:
        return "missing X-Orderflow-Timestamp or X-Orderflow-Signature header"
    try:
        ts = int(timestamp)
    except ValueError:
        return "X-Orderflow-Timestamp must be unix seconds"
    if abs(now - ts) > MAX_SKEW_SECONDS:
        return f"timestamp is more than {MAX_SKEW_SECONDS} s away from now: replay refused"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "signature does not match the body"
    return None


class MappingError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _get(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _require(payload: dict[str, Any], paths: list[str]) -> None:
    missing = [p for p in paths if _get(payload, p) in (None, "", [])]
    if missing:
        raise MappingError(
            [
                Problem(loc=["body", *p.split(".")], code="missing", message=f"{p} is required")
                for p in missing
            ]
        )


def to_order(
    mapping: str, channel: str, payload: Any, default_customer: str | None
) -> tuple[OrderIn, str]:
    """The canonical order and the channel's own order id, from the channel's payload."""
    if not isinstance(payload, dict):
        raise MappingError(
            [Problem(loc=["body"], code="not_an_object", message="the body must be a JSON object")]
        )
    if mapping == "generic":
        _require(payload, ["external_id", "lines"])
        doc = {
            "customer_code": payload.get("customer_code") or default_customer,
            "channel": channel,
            "external_ref": str(payload["external_id"]),
            "lines": payload["lines"],
            "ship_to": payload.get("ship_to"),
            "requested_delivery_date": payload.get("requested_delivery_date"),
            "special_instructions": payload.get("note"),
        }
    else:  # webshop: modelled on common shop-platform order webhooks
        _require(payload, ["id", "line_items"])
        address = payload.get("shipping_address") or None
        doc = {
            "customer_code": str(_get(payload, "customer.id") or default_customer or ""),
            "channel": channel,
            "external_ref": str(payload.get("name") or payload["id"]),
            "lines": [
                {"sku": item.get("sku"), "quantity": item.get("quantity")}
                for item in payload["line_items"]
                if isinstance(item, dict)
            ],
            "ship_to": {
                "line1": address.get("address1"),
                "city": address.get("city"),
                "postal_code": address.get("zip"),
                "country": address.get("country_code"),
            }
            if address
            else None,
            "special_instructions": payload.get("note") or None,
        }
    if not doc["customer_code"]:
        raise MappingError(
            [
                Problem(
                    loc=["body", "customer"],
                    code="missing",
                    message="no customer in the payload and the channel has no default customer",
                )
            ]
        )
    try:
        order = OrderIn.model_validate(doc)
    except ValidationError as err:
        raise MappingError(
            [
                Problem(loc=["body", *err_loc(e["loc"])], code=e["type"], message=e["msg"])
                for e in err.errors()
            ]
        ) from None
    assert order.external_ref is not None
    return order, order.external_ref


def err_loc(loc: tuple[Any, ...]) -> list[str | int]:
    return [x if isinstance(x, int) else str(x) for x in loc]
