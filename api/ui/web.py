"""What every console page shares: the route class (session, CSRF, errors as pages), the
templates and their filters, and the API's own role guards.

Authentication and authorization are the API's, unchanged: the route class turns the session
cookie back into the `Authorization: Bearer` header the API reads, so the app-wide access check
(orderflow/api/access.py, whose table holds a rule for every console route) and `CurrentUser`
from orderflow/api/deps.py run on every page exactly as on the JSON routes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from api import access
from api.deps import Caller
from api.errors import ProblemsError
from api.ui.session import COOKIE, ConsoleSession, csrf_ok, csrf_token, load
from services.config import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
SCOPE_KEY = "orderflow.console"
PAGE_SIZE = 25
# The menu: each entry shown to the roles the access table lets open it.
NAV = [
    ("Approvals", "/ui/approvals"),
    ("Pick lists", "/ui/pick-lists"),
    ("New order", "/ui/orders/new"),
    ("Stuck", "/ui/stuck"),
    ("Alerts", "/ui/alerts"),
    ("Production", "/ui/production"),
    ("Exceptions", "/ui/exceptions"),
    ("Disruptions", "/ui/disruptions"),
    ("Imports", "/ui/imports"),
    ("KPIs", "/ui/kpis"),
]

# Served with every page: nothing from elsewhere, no framing, forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _settings(request: Request) -> Settings:
    return request.app.state.orderflow.settings


def console_session(request: Request) -> ConsoleSession | None:
    return request.scope.get(SCOPE_KEY)


def set_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _login_redirect(request: Request, expired: bool) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/ui"
    url = f"/ui/login?next={quote(target, safe='/')}" + ("&expired=1" if expired else "")
    response = RedirectResponse(url, status_code=303)
    if expired:
        response.delete_cookie(COOKIE, path="/ui")
    return response


def _sentences(errors: Sequence[Any]) -> list[str]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        out.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return out


class ConsoleRoute(APIRoute):
    """A console route: reads the session cookie, checks the CSRF token of every POST, and
    answers errors with a page a person can read instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            settings = _settings(request)
            sess = load(settings, Request(request.scope).cookies.get(COOKIE))
            scope = dict(request.scope)
            # Only the cookie authenticates here: a bearer header is the API's business.
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            if sess is not None and sess.token is not None:
                headers.append((b"authorization", f"Bearer {sess.token}".encode()))
            scope["headers"] = headers
            scope[SCOPE_KEY] = sess
            req = Request(scope, request.receive)
            if req.method == "POST":
                form = await req.form()
                sent = form.get("csrf")
                if not csrf_ok(settings, sess, sent if isinstance(sent, str) else None):
                    return error_page(
                        req,
                        403,
                        "This form was refused: it did not carry this session's security "
                        "token (it came from another site, or the page is too old). Reload "
                        "the page and try again.",
                    )
            try:
                response = await handler(req)
            except HTTPException as err:
                if err.status_code == 401:
                    return _login_redirect(req, expired=sess is not None and sess.signed_in)
                response = error_page(req, err.status_code, str(err.detail))
            except RequestValidationError as err:
                response = error_page(req, 422, *_sentences(err.errors()))
            except ProblemsError as err:
                problems = (f"{'.'.join(map(str, p.loc))}: {p.message}" for p in err.problems)
                response = error_page(req, err.status_code, *problems)
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler


def render(
    request: Request, name: str, user: Caller | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page, with what the layout needs: who is signed in and this session's CSRF token."""
    sess = console_session(request)
    csrf = csrf_token(_settings(request), sess) if sess is not None else ""
    nav = [(label, path) for label, path in NAV if user and may(user, "GET", path)]
    return templates.TemplateResponse(
        request,
        name,
        {"user": user, "csrf": csrf, "nav": nav, "now": datetime.now(UTC), **context},
        status_code=status_code,
    )


def error_page(request: Request, status_code: int, *messages: str) -> HTMLResponse:
    return render(request, "error.html", None, status_code=status_code, messages=messages)


def may(user: Caller, method: str, path: str) -> bool:
    """Whether the access table lets `user` call a console route: a form is shown only to
    those who may post it (the table is enforced on the post itself, like every route)."""
    rule = access.rule_for(method, path)
    return isinstance(rule, frozenset) and user.role in rule


def money(value: Any) -> str:
    return f"{Decimal(value):,.2f}" if value is not None else ""


def duration(seconds: float | None) -> str:
    """3d 4h, 2h 5m, 7m, 40s: how long, to the two largest units."""
    if seconds is None:
        return ""
    if abs(seconds) < 10:
        return f"{abs(seconds):.1f}s"
    s = int(abs(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


templates.env.filters.update(money=money, duration=duration, when=when, percent=percent)
