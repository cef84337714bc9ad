"""The Temporal client every process uses: pydantic converter so Decimal and dates survive."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig

from orderflow.config import Settings

# For request handlers: give up on an unreachable server after about 3 s (the default
# retries for 10 s), so the caller gets a 503 quickly.
API_TEMPORAL_RETRY = RetryConfig(max_interval_millis=1000, max_elapsed_time_millis=3000)


async def connect(
    address: str,
    namespace: str,
    metrics_bind: str | None = None,
    *,
    lazy: bool = False,
    retry_config: RetryConfig | None = None,
) -> Client:
    """Connect with the pydantic data converter; `metrics_bind` ("host:port") exposes the
    Temporal SDK's own metrics for Prometheus. `lazy` connects at the first call."""
    runtime = None
    if metrics_bind is not None:
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_bind))
        )
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        lazy=lazy,
        retry_config=retry_config,
    )


def workflow_id(order_id: str) -> str:
    """The one workflow of an order."""
    return f"order-{order_id}"


def temporal_ui_link(settings: Settings, order_id: str) -> str:
    """The order's workflow in the Temporal Web UI."""
    return (
        f"{settings.temporal_ui_public_url.rstrip('/')}/namespaces/"
        f"{settings.temporal_namespace}/workflows/{workflow_id(order_id)}"
    )
