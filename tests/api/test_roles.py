"""The role x route matrix: every route of the app, every method, every role, against the one
table in orderflow/api/access.py (written down in docs/roles.md)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from httpx import ASGITransport
from starlette.routing import Mount

from api import access
from api.auth import create_user
from api.main import create_app
from domain.callers import ROLES
from tests.utils import TOKEN_CHANNEL, Stack

DOCS = Path(__file__).parent.parent.parent / "docs" / "roles.md"
# Stands in for every path parameter: names nothing that exists, fits every column.
PLACEHOLDER = "99999999"


def _routes(app: FastAPI) -> list[tuple[str, str, object]]:
    out: list[tuple[str, str, object]] = []
    for ctx in iter_route_contexts(app.routes):
        assert ctx.path is not None, ctx  # every route of the app has one
        for method in sorted(ctx.methods or ()):
            out.append((method, ctx.path, ctx.original_route))
    return out


def _console_session(app: FastAPI, token: str | None) -> tuple[str, str]:
    """A console session (signed in with `token`, or anonymous): its Cookie header and its
    forms' CSRF token."""
    from api.ui.session import COOKIE, csrf_token, dump, new_session

    settings = app.state.orderflow.settings
    sess = new_session(token)
    return f"{COOKIE}={dump(settings, sess)}", csrf_token(settings, sess)


def _verdict(path: str, response: httpx.Response) -> str:
    """What the answer says about access: unauthenticated, forbidden, or let through."""
    if path.startswith("/ui") and response.status_code == 303:
        if response.headers["location"].startswith("/ui/login"):
            return "unauthenticated"  # the console's 401
    if response.status_code == 401:
        return "unauthenticated"
    if response.status_code == 403:
        return "forbidden"
    return "through"


async def test_every_route_answers_every_role_as_the_table_says(api_stack: Stack):
    stack = api_stack
    """A route without a rule fails here (and is refused to everyone at run time)."""
    app = create_app(stack.settings, sessions=stack.sessions, client=stack.client)
    routes = _routes(app)
    missing = [f"{m} {p}" for m, p, _ in routes if access.rule_for(m, p) is None]
    assert not missing, f"routes without a rule in orderflow/api/access.py: {missing}"
    declared = {(m, p) for m, p, _ in routes}
    stale = [f"{m} {p}" for m, p in access.RULES if (m, p) not in declared]
    assert not stale, f"rules for routes that do not exist: {stale}"
    mounts = [r.path for r in app.routes if isinstance(r, Mount)]
    assert set(mounts) <= access.PUBLIC_MOUNTS, mounts

    channel = f"roles-{uuid.uuid4().hex[:6]}"
    assert (await stack.post("/channels", {"name": channel})).status_code == 201
    async with app.router.lifespan_context(app):
        async with stack.sessions() as s:
            tokens = {
                role: await create_user(
                    s, f"matrix-{role}", role, channel=TOKEN_CHANNEL if role == "channel" else None
                )
                for role in ROLES
            }
            await s.commit()
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orderflow") as http:
            wrong: list[str] = []
            for method, template, _route in routes:
                rule = access.rule_for(method, template)
                path = re.sub(r"\{[^}]+\}", PLACEHOLDER, template).replace(
                    f"/channels/{PLACEHOLDER}/", f"/channels/{channel}/"
                )
                for role in (None, *ROLES):
                    token = tokens[role] if role is not None else None
                    headers: dict[str, str] = {}
                    data = None
                    if path.startswith("/ui"):  # the console: a session cookie, no bearer
                        headers["Cookie"], csrf = _console_session(app, token)
                        data = {"csrf": csrf} if method == "POST" else None
                    elif token is not None:
                        headers["Authorization"] = f"Bearer {token}"
                    http.cookies.clear()
                    r = await http.request(method, path, headers=headers, data=data)
                    got = _verdict(path, r)
                    if rule == access.SIGNED:  # no bearer token gets past a signature check
                        assert r.status_code == 401, (method, path, role, r.text)
                        continue
                    if rule == access.PUBLIC:  # (a public console page may send to sign-in)
                        want, got = "through", "through" if r.status_code < 400 else got
                    elif role is None:
                        want = "unauthenticated"
                    else:
                        assert isinstance(rule, frozenset)
                        want = "through" if role in rule else "forbidden"
                    if got != want:
                        wrong.append(f"{method} {path} as {role}: {r.status_code}, wanted {want}")
    assert not wrong, "\n".join(wrong)


def test_docs_roles_md_is_the_table():
    """docs/roles.md shows the table the code enforces (regenerate with
    `python -m api.access --write`)."""
    assert access.markdown_table() in DOCS.read_text(), (
        "docs/roles.md is out of date: run `python -m api.access --write`"
    )


async def test_a_route_without_a_rule_is_refused_to_everyone(api_stack: Stack):
    app = create_app(api_stack.settings, sessions=api_stack.sessions, client=api_stack.client)

    @app.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"oops": "open"}

    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orderflow") as http:
            for role in ROLES:
                r = await http.get("/forgotten", headers=api_stack.auth(role))
                assert r.status_code == 403 and "access.py" in r.json()["detail"], r.text
            assert (await http.get("/forgotten")).status_code == 403
