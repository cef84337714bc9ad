"""The Temporal client every process uses: pydantic converter so Decimal and dates survive."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from orderflow.config import Settings


async def connect(address: str, namespace: str, metrics_bind: str | None = None) -> Client:
    """Connect with the pydantic data converter; `metrics_bind` ("host:port") exposes the
    Temporal SDK's own metrics for Prometheus."""
    runtime = None
    if metrics_bind is not None:
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=metrics_bind))
        )
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter, runtime=runtime
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
