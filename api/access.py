"""Who may call what: the one table of roles per route, enforced for every request by
`deps.authorize` and documented in docs/roles.md.

A route missing from the table is refused to everyone (403 naming this file), and
tests/api/test_roles.py fails: a new route needs its rule here first. Handlers narrow
further where the answer depends on the order (a channel token sees only its channel's
orders; a decision needs the role the pending level waits for), never wider.
"""

from __future__ import annotations

from typing import Literal

from domain.callers import ROLES

# No bearer token: health probes, Prometheus, the OpenAPI documents, a blank template.
PUBLIC: Literal["public"] = "public"
# No bearer token either: the request must carry its channel's HMAC signature instead.
SIGNED: Literal["signed"] = "signed"

Rule = frozenset[str] | Literal["public", "signed"]

ALL: frozenset[str] = frozenset(ROLES)
# Everyone inside the company: every role but the integrations' `channel` tokens.
STAFF: frozenset[str] = ALL - {"channel"}
# The roles an approval level can wait for (routing rules and escalations).
APPROVERS: frozenset[str] = frozenset(
    {"admin", "credit_controller", "sales_manager", "director", "ops"}
)


def roles(*names: str) -> frozenset[str]:
    """These roles, and admin."""
    unknown = set(names) - ALL
    assert not unknown, unknown
    return frozenset({"admin", *names})


ADMIN = roles()

RULES: dict[tuple[str, str], Rule] = {
    # service
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("HEAD", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("HEAD", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("HEAD", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("HEAD", "/redoc"): PUBLIC,
    # master data
    ("POST", "/customers"): roles("sales", "credit_controller"),
    ("GET", "/customers/{code}"): STAFF,
    ("PUT", "/customers/{code}/credit-limit"): roles("credit_controller"),
    ("POST", "/products"): ADMIN,
    ("GET", "/products/{sku}"): ALL,
    ("GET", "/inventory/{sku}"): ALL,
    ("PUT", "/inventory/{sku}"): roles("ops"),
    ("POST", "/inventory/{sku}/replenishments"): roles("ops"),
    ("POST", "/inventory/replenishments/{replenishment_id}/receive"): roles("ops"),
    # orders (a channel token: only its own channel's orders)
    ("POST", "/orders"): roles("sales", "channel"),
    ("GET", "/orders"): ALL,
    ("GET", "/orders/{order_id}"): ALL,
    ("GET", "/orders/{order_id}/history"): STAFF,
    ("PATCH", "/orders/{order_id}"): roles("sales", "channel"),
    ("POST", "/orders/{order_id}/cancel"): roles("sales", "channel", "ops"),
    ("POST", "/orders/{order_id}/decision"): APPROVERS,
    ("POST", "/orders/{order_id}/retry-shipping"): roles("ops"),
    ("POST", "/orders/{order_id}/carrier-exception"): roles("ops"),
    ("POST", "/shipments/{tracking_number}/events"): roles("channel", "ops"),
    # the warehouse floor (manual mode, docs/warehouse.md)
    ("GET", "/pick-lists"): roles("warehouse", "ops"),
    ("GET", "/pick-lists/{batch_id}"): roles("warehouse", "ops"),
    ("GET", "/pick-lists/{batch_id}.xlsx"): roles("warehouse", "ops"),
    ("POST", "/pick-lists/{batch_id}/confirm"): roles("warehouse", "ops"),
    ("POST", "/orders/{order_id}/packages"): roles("warehouse", "ops"),
    # returns (docs/returns.md; a channel token: only its own channel's orders)
    ("POST", "/orders/{order_id}/returns"): roles("sales", "channel", "ops"),
    ("GET", "/returns"): ALL,
    ("GET", "/returns/{rma_id}"): ALL,
    ("POST", "/returns/{rma_id}/decision"): APPROVERS,
    ("POST", "/returns/{rma_id}/receive"): roles("warehouse", "ops"),
    ("POST", "/returns/{rma_id}/cancel"): roles("sales", "ops"),
    # invoices and payments (docs/returns.md)
    ("GET", "/invoices/{number}"): STAFF,
    ("POST", "/invoices/{number}/payments"): roles("credit_controller", "ops"),
    ("POST", "/channels/{channel}/orders"): SIGNED,
    # approvals, alerts, KPIs
    ("GET", "/approvals"): APPROVERS,
    ("GET", "/alerts"): STAFF,
    ("POST", "/alerts/{alert_id}/ack"): roles("ops"),
    ("GET", "/kpis"): STAFF,
    ("GET", "/kpis.xlsx"): STAFF,
    # pricing and routing rules
    ("PUT", "/price-lists/{tier}/{sku}"): roles("sales_manager"),
    ("DELETE", "/price-lists/{tier}/{sku}"): roles("sales_manager"),
    ("PUT", "/customers/{code}/prices/{sku}"): roles("sales_manager"),
    ("GET", "/quantity-breaks"): STAFF,
    ("PUT", "/quantity-breaks"): roles("sales_manager"),
    ("GET", "/promotions"): STAFF,
    ("PUT", "/promotions/{code}"): roles("sales_manager"),
    ("POST", "/pricing/preview"): ALL,
    ("GET", "/routing-rules"): STAFF,
    ("PUT", "/routing-rules"): ADMIN,
    ("POST", "/routing-rules/dry-run"): ADMIN,
    # order priority (docs/warehouse-layout.md)
    ("GET", "/priority-rules"): roles("ops"),
    ("PUT", "/priority-rules"): roles("ops"),
    ("PUT", "/orders/{order_id}/priority"): roles("ops"),
    # imports
    ("GET", "/imports/template.xlsx"): PUBLIC,
    ("POST", "/imports"): roles("sales"),
    ("GET", "/imports/{import_id}"): roles("sales"),
    ("GET", "/imports/{import_id}/result.xlsx"): roles("sales"),
    # books against shelves (docs/reconcile.md)
    ("GET", "/reconcile"): roles("ops"),
    ("POST", "/reconcile"): roles("ops"),
    ("POST", "/stock-counts"): roles("ops"),
    ("POST", "/stock-counts/sheet"): roles("ops"),
    ("GET", "/stock-counts/{count_id}"): roles("ops"),
    ("GET", "/production-orders"): STAFF,
    ("POST", "/production-orders/{production_id}/complete"): roles("ops"),
    # users and channels
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): ADMIN,
    ("POST", "/users/{user_id}/revoke"): ADMIN,
    ("GET", "/channels"): ADMIN,
    ("POST", "/channels"): ADMIN,
    # customer notices and disruptions (docs/notices.md, docs/disruptions.md)
    ("GET", "/customers/{code}/contact"): STAFF,
    ("PUT", "/customers/{code}/contact"): roles("sales"),
    ("PUT", "/channels/{channel}/notices"): ADMIN,
    ("GET", "/orders/{order_id}/notices"): STAFF,
    ("POST", "/orders/{order_id}/substitute"): roles("sales", "channel"),
    ("POST", "/disruptions"): roles("ops"),
    ("GET", "/disruptions"): STAFF,
    ("GET", "/disruptions/{disruption_id}"): STAFF,
    ("POST", "/disruptions/{disruption_id}/lift"): roles("ops"),
}

# The browser console (orderflow/api/ui/, docs/console.md): each page has the rule of the API
# route it mirrors, for staff only (a `channel` token is an integration, not a person). Its
# sign-in pages are public: the token arrives in the form, and the session cookie after.
_CONSOLE_MIRRORS = {
    ("GET", "/ui/approvals"): ("GET", "/approvals"),
    ("GET", "/ui/orders/{order_id}"): ("GET", "/orders/{order_id}/history"),
    ("POST", "/ui/orders/{order_id}/decision"): ("POST", "/orders/{order_id}/decision"),
    ("POST", "/ui/orders/{order_id}/cancel"): ("POST", "/orders/{order_id}/cancel"),
    # Order entry and its lookups: for those who may create an order.
    ("GET", "/ui/orders/new"): ("POST", "/orders"),
    ("POST", "/ui/orders/new"): ("POST", "/orders"),
    ("POST", "/ui/orders/new/check"): ("POST", "/orders"),
    ("GET", "/ui/orders/new/customers"): ("POST", "/orders"),
    ("GET", "/ui/orders/new/products"): ("POST", "/orders"),
    ("GET", "/ui/alerts"): ("GET", "/alerts"),
    ("POST", "/ui/alerts/{alert_id}/ack"): ("POST", "/alerts/{alert_id}/ack"),
    ("GET", "/ui/imports"): ("GET", "/imports/{import_id}"),
    ("POST", "/ui/imports"): ("POST", "/imports"),
    ("GET", "/ui/imports/{import_id}/result.xlsx"): ("GET", "/imports/{import_id}/result.xlsx"),
    ("GET", "/ui/kpis"): ("GET", "/kpis"),
    ("GET", "/ui/kpis.xlsx"): ("GET", "/kpis.xlsx"),
    # Amend from the order page; the shop floor's production orders and carrier exceptions.
    ("POST", "/ui/orders/{order_id}/amend"): ("PATCH", "/orders/{order_id}"),
    ("GET", "/ui/production"): ("GET", "/production-orders"),
    ("POST", "/ui/production/{production_id}/complete"): (
        "POST",
        "/production-orders/{production_id}/complete",
    ),
    ("POST", "/ui/orders/{order_id}/carrier-exception"): (
        "POST",
        "/orders/{order_id}/carrier-exception",
    ),
    # The warehouse floor, order priority, returns to decide and disruptions.
    ("GET", "/ui/pick-lists"): ("GET", "/pick-lists"),
    ("GET", "/ui/pick-lists/{batch_id}.xlsx"): ("GET", "/pick-lists/{batch_id}.xlsx"),
    ("POST", "/ui/pick-lists/{batch_id}/confirm"): ("POST", "/pick-lists/{batch_id}/confirm"),
    ("POST", "/ui/orders/{order_id}/packages"): ("POST", "/orders/{order_id}/packages"),
    ("POST", "/ui/orders/{order_id}/priority"): ("PUT", "/orders/{order_id}/priority"),
    ("POST", "/ui/returns/{rma_id}/decision"): ("POST", "/returns/{rma_id}/decision"),
    ("GET", "/ui/disruptions"): ("GET", "/disruptions"),
    ("POST", "/ui/disruptions"): ("POST", "/disruptions"),
    ("POST", "/ui/disruptions/{disruption_id}/lift"): (
        "POST",
        "/disruptions/{disruption_id}/lift",
    ),
}
RULES.update(
    {page: frozenset(RULES[api]) & STAFF for page, api in _CONSOLE_MIRRORS.items()}
)
RULES.update(
    {
        ("GET", "/ui"): PUBLIC,
        ("GET", "/ui/login"): PUBLIC,
        ("POST", "/ui/login"): PUBLIC,
        ("POST", "/ui/logout"): PUBLIC,
        # Like `orderflow stuck`: an operations view.
        ("GET", "/ui/stuck"): roles("ops"),
        # Orders held by a carrier exception: for those who decide on one (ops).
        ("GET", "/ui/exceptions"): roles("ops"),
    }
)


# Static files under these prefixes are served to anyone (no route, no rule).
PUBLIC_MOUNTS = frozenset({"/ui/static"})


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route (its path template, as declared); None when it has none."""
    return RULES.get((method.upper(), path))


def markdown_table() -> str:
    """The table as docs/roles.md shows it: a row per route, a column per role."""
    head = ["route", *ROLES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, path), rule in sorted(RULES.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if method == "HEAD":
            continue  # the same as its GET
        if isinstance(rule, frozenset):
            cells = ["yes" if role in rule else "-" for role in ROLES]
        else:
            cells = [rule] * len(ROLES)
        lines.append(f"| `{method} {path}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def splice_table(page: str) -> str:
    """docs/roles.md with its table (the lines starting "| `" after the `| route |` head)
    replaced by today's; the prose around it kept."""
    lines = page.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("| route |"))
    end = start + 2
    while end < len(lines) and lines[end].startswith("| `"):
        end += 1
    return "".join(lines[:start]) + markdown_table() + "".join(lines[end:])


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if sys.argv[1:] == ["--write"]:  # python -m api.access --write: update docs/roles.md
        doc = Path(__file__).resolve().parent.parent / "docs" / "roles.md"
        doc.write_text(splice_table(doc.read_text()))
    else:
        print(markdown_table(), end="")
