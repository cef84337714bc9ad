"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import metadata

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from temporalio.client import Client

from api import errors, ui
from api.auth import TokenCache
from api.deps import AppState, SessionDep, authorize
from api.routes import (
    alerts,
    approvals,
    channels,
    customers,
    disruptions,
    health,
    imports,
    inventory,
    invoices,
    kpis,
    notices,
    orders,
    pick_lists,
    pricing,
    priority,
    production,
    products,
    reconcile,
    returns,
    routing,
    shipments,
    users,
)
from db.session import (
    API_STATEMENT_TIMEOUT_S,
    SessionFactory,
    make_engine,
    make_session_factory,
)
from services.config import Settings, get_settings
from services.metrics import refresh_gauges
from services.temporal import API_TEMPORAL_RETRY, connect


def create_app(
    settings: Settings | None = None,
    *,
    sessions: SessionFactory | None = None,
    client: Client | None = None,
) -> FastAPI:
    """Build the app; tests pass their own session factory and Temporal client."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        nonlocal sessions, client
        if sessions is None:
            engine = make_engine(
                settings.resolved_database_url,
                pool_size=20,
                max_overflow=20,
                statement_timeout_s=API_STATEMENT_TIMEOUT_S,
            )
            sessions = make_session_factory(engine)
        if client is None:
            # Lazy, with a short retry budget: the API starts while Temporal is down, and a
            # write that needs Temporal answers 503 in seconds instead of hanging.
            client = await connect(
                settings.resolved_temporal_address,
                settings.temporal_namespace,
                lazy=True,
                retry_config=API_TEMPORAL_RETRY,
            )
        app.state.orderflow = AppState(
            settings=settings, sessions=sessions, client=client, tokens=TokenCache()
        )
        yield
        if engine is not None:
            await engine.dispose()

    app = FastAPI(
        title="Orderflow",
        version=metadata.version("orderflow"),
        description="Sales orders as durable Temporal workflows. Authenticate with "
        "`Authorization: Bearer <token>`.",
        lifespan=lifespan,
        # Who may call each route: the table in orderflow/api/access.py.
        dependencies=[Depends(authorize)],
    )
    errors.install(app)
    app.add_middleware(imports.UploadLimit)  # before the form is parsed
    for module in (
        health,
        customers,
        products,
        inventory,
        orders,
        shipments,
        approvals,
        alerts,
        pricing,
        routing,
        priority,
        kpis,
        users,
        channels,
        imports,
        production,
        returns,
        invoices,
        notices,
        disruptions,
        pick_lists,
        reconcile,
    ):
        app.include_router(module.router, responses=errors.COMMON_RESPONSES)
    ui.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(session: SessionDep) -> PlainTextResponse:
        """Prometheus text; the gauges are read from PostgreSQL at scrape time."""
        await refresh_gauges(session)
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)

    return app
