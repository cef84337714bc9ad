"""The Temporal client every process uses: pydantic converter so Decimal and dates survive."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from services.config import Settings

# For request handlers: give up on an unreachable server after about 3 s (the default
# retries for 10 s), so the caller gets a 503 quickly.
API_TEMPORAL_RETRY = RetryConfig(max_interval_millis=1000, max_elapsed_time_millis=3000)


class TemporalUnreachable(RPCError):
    """A lazy client's first connection failed: the server is unavailable. An RPCError with
    status UNAVAILABLE, so every path that handles Temporal being down handles this too
    (the SDK itself raises a bare RuntimeError "Failed client connect")."""

    def __init__(self, cause: BaseException):
        super().__init__(f"Temporal unreachable: {cause}", RPCStatusCode.UNAVAILABLE, b"")


def metrics_runtime(metrics_bind: str) -> Runtime:
    """A runtime that exposes the Temporal SDK's own metrics for Prometheus on
    `metrics_bind` ("host:port"). It binds the port: make one per process, not per try."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_bind)))


async def connect(
    address: str,
    namespace: str,
    metrics_bind: str | None = None,
    *,
    lazy: bool = False,
    retry_config: RetryConfig | None = None,
    runtime: Runtime | None = None,
) -> Client:
    """Connect with the pydantic data converter; `metrics_bind` ("host:port") exposes the
    Temporal SDK's own metrics for Prometheus (or pass a `runtime` from `metrics_runtime`).
    `lazy` connects at the first call; if that cannot connect, TemporalUnreachable."""
    if runtime is None and metrics_bind is not None:
        runtime = metrics_runtime(metrics_bind)
    client = await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        lazy=lazy,
        retry_config=retry_config,
    )
    if lazy:
        _raise_unreachable_on_connect_failure(client)
    return client


def _raise_unreachable_on_connect_failure(client: Client) -> None:
    """Make a lazy client's failed connect a TemporalUnreachable, for every call through it."""
    service = client.service_client
    connected = getattr(service, "_connected_client", None)
    if connected is None:  # another SDK layout: outages.py still knows the RuntimeError
        return

    async def connected_or_unreachable() -> Any:
        try:
            return await connected()
        except RuntimeError as err:
            raise TemporalUnreachable(err) from err

    # The SDK's bridge client keeps this private attribute (probed above); ServiceClient
    # does not declare it.
    service._connected_client = connected_or_unreachable  # type: ignore[attr-defined]  # SDK private


def workflow_id(order_id: str) -> str:
    """The one workflow of an order."""
    return f"order-{order_id}"


def temporal_ui_link(settings: Settings, order_id: str) -> str:
    """The order's workflow in the Temporal Web UI."""
    return (
        f"{settings.temporal_ui_public_url.rstrip('/')}/namespaces/"
        f"{settings.temporal_namespace}/workflows/{workflow_id(order_id)}"
    )


async def existing_workflow_ids(client: Client, ids: list[str]) -> set[str]:
    """Which of these workflow ids Temporal knows (any status), in one visibility query:
    a sweep for stranded orders asks once, not with one start call per order. Visibility
    lags a moment behind a start, so a workflow missing here may still exist; callers
    treat the answer as "known to exist", never as "known not to"."""
    found: set[str] = set()
    for i in range(0, len(ids), 100):
        chunk = ids[i : i + 100]
        quoted = ", ".join("'" + wid.replace("'", "") + "'" for wid in chunk)
        async for wf in client.list_workflows(f"WorkflowId IN ({quoted})", limit=len(chunk)):
            found.add(wf.id)
    return found
