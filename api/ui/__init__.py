"""The browser console at /ui: server-rendered pages on the API's own roles, rules and
functions (see docs/console.md)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui import aftersale_pages, amend, entry, floor_pages, ops_pages, pages, warehouse_pages
from api.ui.web import HERE


def install(app: FastAPI) -> None:
    """Add the console's pages and its stylesheet (shipped in the package) to the app."""
    # Before the order page: /ui/orders/new is the entry form, not an order named "new".
    app.include_router(entry.router)
    app.include_router(pages.router)
    app.include_router(ops_pages.router)
    app.include_router(floor_pages.router)
    app.include_router(amend.router)
    app.include_router(warehouse_pages.router)
    app.include_router(aftersale_pages.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
