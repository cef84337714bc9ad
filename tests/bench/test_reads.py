"""The reads-at-scale bench at a small scale (CI): real PostgreSQL and Temporal, the real app.
Timings are reported, never asserted; the shape and the counts behind them are."""

from __future__ import annotations

from temporalio.client import Client

from bench.reads import TABLES, TARGETS_MS, bench_reads
from orderflow.embedded import EmbeddedPostgres
from tests.conftest import test_settings as settings_for

ORDERS = 2000


async def test_reads_bench_small(pg: EmbeddedPostgres, client: Client) -> None:
    settings = settings_for(pg)
    report = await bench_reads(settings, client, ORDERS, samples=5, progress=lambda _: None)

    history = report["history"]
    assert history["orders"] == ORDERS
    rows = history["rows"]
    assert set(rows) == set(TABLES)
    assert rows["orders"] == ORDERS
    assert ORDERS < rows["order_lines"] <= 5 * ORDERS
    assert rows["order_events"] > 5 * ORDERS  # a timeline per order, ~10 steps when complete
    # The KPI facts, as the status writer keeps them: a row per order, a step per status
    # event but each order's last (the bench's timelines are status events only).
    assert rows["order_facts"] == ORDERS
    assert rows["order_steps"] == rows["order_events"] - ORDERS
    assert 0 < rows["shipments"] == rows["invoices"] == rows["receivables"] < ORDERS
    # The KPI rollup of every closed day (a year), built once after the bulk write.
    assert history["rollup_days"] >= 364
    assert 364 <= rows["kpi_day_counts"] <= 5 * history["rollup_days"]
    assert rows["kpi_day_counts"] < rows["kpi_day_histograms"] < rows["order_steps"]
    reads = report["reads"]
    for key in (
        "list_all",
        "list_status_completed",
        "list_customer",
        "list_channel",
        "list_cursor",
        "list_paging",
        "detail",
        "kpis_month",
        "kpis_year",
        "inbox_admin",
        "inbox_role",
        "stuck",
    ):
        r = reads[key]
        assert r["n"] >= 3 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"], key
        assert r["target_p99_ms"] in TARGETS_MS.values()
        assert isinstance(r["met"], bool)
    assert reads["list_all"]["items_per_page"] == 50
    assert reads["list_status_awaiting_approval"]["items_per_page"] == 20  # 1 % of 2,000
    assert reads["detail"]["timeline_events_max"] >= 10
    assert reads["kpis_year"]["orders_received"] == ORDERS
    assert 0 < reads["kpis_month"]["orders_received"] < ORDERS / 6
    assert reads["inbox_admin"]["items"] == 20
    assert 0 < reads["inbox_role"]["items"] < 20  # one role of four
    assert 0 < reads["stuck"]["orders_found"] <= 200  # in flight for more than an hour
    # The scratch database is gone; the tests' own database never saw the history.
    import psycopg

    from bench.reads import _libpq

    with psycopg.connect(_libpq(settings.resolved_database_url)) as conn:
        gone = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (report["scratch_database"],)
        ).fetchone()
        assert gone == (0,)
        assert conn.execute(
            "SELECT count(*) FROM orders WHERE id LIKE 'SO-%%' AND created_by = 'bench'"
        ).fetchone() == (0,)
