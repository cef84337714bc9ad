"""Channel webhooks: signatures, and the mappings from a channel's shape to an order."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from pydantic import ValidationError

from domain.orders import OrderIn
from domain.problems import Problem

MAX_SKEW_SECONDS = 300
MAPPINGS = ("generic", "webshop")
# Both headers are checked for shape before anything is computed from them: a 400-digit
# timestamp or a non-ASCII signature is a 401 with the reason, like any other bad one.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"sha256=[0-9a-fA-F]{64}")


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
    if not TIMESTAMP.fullmatch(timestamp):
        return "X-Orderflow-Timestamp must be unix seconds (at most 12 digits)"
    if not SIGNATURE.fullmatch(signature):
        return "X-Orderflow-Signature must be sha256= followed by 64 hex digits"
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        return f"timestamp is more than {MAX_SKEW_SECONDS} s away from now: replay refused"
    expected = sign(secret, timestamp, body).encode()
    if not hmac.compare_digest(expected, signature.lower().encode()):
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


def _problem(path: list[str | int], rule: str) -> Problem:
    where = ".".join(str(p) for p in path)
    return Problem(loc=["body", *path], code="type_error", message=f"{where} must be {rule}")


def _ident(
    payload: dict[str, Any], key: str, problems: list[Problem], under: str | None = None
) -> str | None:
    """An id field: a string or an integer (a shop's numeric ids), never an object."""
    value = payload.get(key)
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return None if value is None else str(value)
    problems.append(_problem([under, key] if under else [key], "a string or an integer"))
    return None


def _object(payload: dict[str, Any], key: str, problems: list[Problem]) -> dict[str, Any] | None:
    value = payload.get(key)
    if value is None or value == "" or isinstance(value, dict):
        return value or None
    problems.append(_problem([key], "an object (or null)"))
    return None


def _generic(
    channel: str, payload: dict[str, Any], default_customer: str | None
) -> tuple[dict[str, Any], list[Problem]]:
    _require(payload, ["external_id", "lines"])
    problems: list[Problem] = []
    doc = {
        "customer_code": payload.get("customer_code") or default_customer,
        "channel": channel,
        "external_ref": _ident(payload, "external_id", problems),
        "lines": payload["lines"],
        "ship_to": payload.get("ship_to"),
        "requested_delivery_date": payload.get("requested_delivery_date"),
        "special_instructions": payload.get("note"),
    }
    return doc, problems


def _webshop(
    channel: str, payload: dict[str, Any], default_customer: str | None
) -> tuple[dict[str, Any], list[Problem]]:
    """Modelled on common shop-platform order webhooks."""
    _require(payload, ["id", "line_items"])
    problems: list[Problem] = []
    shop_id = _ident(payload, "id", problems)
    name = _ident(payload, "name", problems)
    customer = _object(payload, "customer", problems) or {}
    customer_id = _ident(customer, "id", problems, under="customer")
    items = payload["line_items"]
    lines: list[dict[str, Any]] = []
    if not isinstance(items, list):
        problems.append(_problem(["line_items"], "a list of objects"))
    else:
        for i, item in enumerate(items):
            if isinstance(item, dict):
                lines.append({"sku": item.get("sku"), "quantity": item.get("quantity")})
            else:
                problems.append(_problem(["line_items", i], "an object"))
    address = _object(payload, "shipping_address", problems)
    doc = {
        "customer_code": customer_id or default_customer or "",
        "channel": channel,
        "external_ref": name or shop_id,
        "lines": lines,
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
    return doc, problems


def to_order(
    mapping: str, channel: str, payload: Any, default_customer: str | None
) -> tuple[OrderIn, str]:
    """The canonical order and the channel's own order id, from the channel's payload.
    Every problem is reported at once, each naming the field of the channel's body."""
    if not isinstance(payload, dict):
        raise MappingError(
            [Problem(loc=["body"], code="not_an_object", message="the body must be a JSON object")]
        )
    build = _generic if mapping == "generic" else _webshop
    doc, problems = build(channel, payload, default_customer)
    if problems:
        raise MappingError(problems)
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
