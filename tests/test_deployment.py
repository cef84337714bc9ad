"""docker-compose.yml can't run here (no Docker engine), so check its shape instead."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_images_or_builds():
    services = _compose()["services"]
    assert {
        "temporal-db",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "app-db",
        "migrate",
        "api",
        "worker",
        "prometheus",
    } <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
    assert services["temporal"]["image"].startswith("temporalio/auto-setup")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui")
    assert services["prometheus"]["image"].startswith("prom/prometheus")


def test_api_has_two_replicas_workers_scale_and_both_reach_the_same_services():
    services = _compose()["services"]
    api, worker = services["api"], services["worker"]
    assert api["deploy"]["replicas"] == 2
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N works"
    for svc in (api, worker):
        env = svc["environment"]
        assert (
            env["ORDERFLOW_DATABASE_URL"].startswith("postgresql://")
            and "@app-db:" in env["ORDERFLOW_DATABASE_URL"]
        )
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["ORDERFLOW_WORKER_METRICS_PORT"] == "9464"


def test_health_checks_and_dependencies():
    services = _compose()["services"]
    for name in ("temporal-db", "temporal", "app-db", "api"):
        assert "healthcheck" in services[name], name
    assert services["temporal"]["depends_on"]["temporal-db"]["condition"] == "service_healthy"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "temporal-db"
    setup = " ".join(services["temporal-setup"]["command"])
    for sa in (
        "OrderStatus=Keyword",
        "CustomerCode=Keyword",
        "Channel=Keyword",
        "OrderTotal=Double",
        "AwaitingRole=Keyword",
    ):
        assert sa in setup


def test_prometheus_scrapes_api_and_workers():
    services = _compose()["services"]
    mount = services["prometheus"]["volumes"][0].split(":")[0]
    prom = yaml.safe_load((ROOT / mount).read_text())
    targets = {
        (job["job_name"], sd["names"][0], sd["port"])
        for job in prom["scrape_configs"]
        for sd in job["dns_sd_configs"]
    }
    assert ("orderflow-api", "api", 8000) in targets
    assert ("orderflow-worker", "worker", 9464) in targets
    assert (ROOT / "Dockerfile").exists()


def test_temporal_and_its_ui_listen_on_loopback_only():
    """Temporal answers whoever reaches it (signal, terminate): never on every interface."""
    services = _compose()["services"]
    for name in ("temporal", "temporal-ui"):
        for port in services[name].get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
