"""The `orderflow` command: up, worker, api, migrate, users."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from orderflow.config import Settings, get_settings

app = typer.Typer(
    help="Orderflow: sales orders as durable Temporal workflows.", no_args_is_help=True
)
users_app = typer.Typer(help="Manage API users and their tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
console = Console(stderr=True)


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("ORDERFLOW_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


async def _prepare_database(settings: Settings) -> None:
    """Migrations, demo data and the bootstrap token: everything `up` needs in PostgreSQL."""
    from orderflow.api.auth import ensure_token
    from orderflow.db.migrate import upgrade
    from orderflow.db.seed import load_demo_data
    from orderflow.db.session import make_engine, make_session_factory

    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session:
            await load_demo_data(session)
            if settings.bootstrap_token:
                await ensure_token(session, "bootstrap", "admin", settings.bootstrap_token)
                await session.commit()
    finally:
        await engine.dispose()


@app.command()
def up(
    api_port: Annotated[int | None, typer.Option(help="API port (ORDERFLOW_API_PORT)")] = None,
    temporal_port: Annotated[int | None, typer.Option(help="Temporal gRPC port")] = None,
    ui_port: Annotated[int | None, typer.Option(help="Temporal Web UI port")] = None,
    pg_port: Annotated[int | None, typer.Option(help="PostgreSQL port")] = None,
) -> None:
    """Start the whole stack: PostgreSQL, Temporal + UI, migrations, demo data, worker, API."""
    from orderflow.embedded import EmbeddedPostgres, EmbeddedTemporal, PortBusyError, require_free

    overrides = {
        k: v
        for k, v in {
            "api_port": api_port,
            "temporal_port": temporal_port,
            "temporal_ui_port": ui_port,
            "pg_port": pg_port,
        }.items()
        if v is not None
    }
    settings = get_settings().model_copy(update=overrides)
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    h = settings.host
    try:
        require_free(h, settings.api_port, "the API", "ORDERFLOW_API_PORT")
        if not settings.database_url:
            require_free(h, settings.pg_port, "PostgreSQL", "ORDERFLOW_PG_PORT")
        if not settings.temporal_address:
            require_free(h, settings.temporal_port, "Temporal", "ORDERFLOW_TEMPORAL_PORT")
            require_free(
                h, settings.temporal_ui_port, "the Temporal UI", "ORDERFLOW_TEMPORAL_UI_PORT"
            )
    except PortBusyError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None

    if not settings.secret_key:
        # Channel webhook secrets derive from this key: make one once and keep it.
        key_file = home / "secret.key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        settings = settings.model_copy(update={"secret_key": key_file.read_text().strip()})
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started: list = []
    try:
        env = dict(os.environ)
        env["ORDERFLOW_SECRET_KEY"] = settings.secret_key or ""
        if not settings.database_url:
            console.print("starting PostgreSQL …")
            pg = EmbeddedPostgres(home / "pg", h, settings.pg_port)
            pg.start()
            started.append(pg)
            env["ORDERFLOW_DATABASE_URL"] = pg.url
            settings = settings.model_copy(update={"database_url": pg.url})
        if not settings.temporal_address:
            console.print("starting Temporal dev server and Web UI …")
            tmp = EmbeddedTemporal(
                home / "temporal.db",
                h,
                settings.temporal_port,
                settings.temporal_ui_port,
                settings.temporal_namespace,
                wal=settings.temporal_sqlite_wal,
            )
            tmp.start(home / "temporal.log")
            started.append(tmp)
            env["TEMPORAL_ADDRESS"] = tmp.address
        console.print("migrating and loading demo data …")
        asyncio.run(_prepare_database(settings))
        children = _start_children(settings, env, home)
        started.extend(children)
        _wait_healthy(settings, children, lambda: stopping)
        _banner(settings)
        while not stopping:
            dead = [c for c in children if not c.alive()]
            if dead:
                console.print(
                    f"[red]{dead[0].name} exited; see {home}/{dead[0].name}.log; stopping[/red]"
                )
                break
            time.sleep(0.5)
    except (RuntimeError, TimeoutError, OSError) as err:
        console.print(f"[red]could not start: {err}[/red]")
        raise typer.Exit(1) from None
    finally:
        console.print("stopping …")
        for proc in reversed(started):
            proc.stop()
        console.print("stopped; data kept in " + str(home))


def _start_children(settings: Settings, env: dict[str, str], home: Path) -> list:
    from orderflow.embedded import spawn

    py = sys.executable
    workers = [
        spawn(name, [py, "-m", "orderflow.cli", "worker"], home / f"{name}.log", env=env)
        for name in ["worker"] + [f"worker-{i}" for i in range(2, settings.workers + 1)]
    ]
    api = spawn(
        "api",
        [py, "-m", "orderflow.cli", "api", "--port", str(settings.api_port)],
        home / "api.log",
        env=env,
    )
    return [*workers, api]


def _wait_healthy(settings: Settings, children: list, stopping) -> None:  # type: ignore[no-untyped-def]
    url = f"http://{settings.host}:{settings.api_port}/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopping():
        for child in children:
            if not child.alive():
                raise RuntimeError(
                    f"{child.name} exited during start-up; see its log in {settings.home}"
                )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    if not stopping():
        raise TimeoutError(f"the API did not report healthy at {url} within 60 s")


def _banner(settings: Settings) -> None:
    api = f"http://{settings.host}:{settings.api_port}"
    lines = [
        f"API          {api}",
        f"API docs     {api}/docs",
        f"Temporal UI  {settings.temporal_ui_url}"
        if not settings.temporal_address
        else f"Temporal     {settings.temporal_address} (external)",
        f"Logs, data   {settings.home.resolve()}",
    ]
    if not settings.bootstrap_token:
        lines.append("Token        orderflow users create me --role admin")
    lines.append("Ctrl-C stops everything; orders in flight carry on at the next `make up`.")
    console.print(Panel("\n".join(lines), title="Orderflow is up", expand=False))


@app.command()
def worker() -> None:
    """Run an order worker against the configured PostgreSQL and Temporal."""
    from orderflow.workers.main import run

    _logging()
    settings = get_settings()
    with asyncio.Runner(loop_factory=_loop_factory(settings.uvloop)) as runner:
        runner.run(run(settings))


def _loop_factory(wanted: bool):  # type: ignore[no-untyped-def]
    """uvloop where it is installed (it comes with uvicorn[standard]) and not turned off: the
    worker spends much of its time in the event loop (every query, every task hand-off)."""
    if wanted:
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            pass
    return None


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="port (default ORDERFLOW_API_PORT)")] = None,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from orderflow.api.main import create_app

    _logging()
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=port or settings.api_port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def migrate() -> None:
    """Apply database migrations and load the demo data (idempotent)."""
    asyncio.run(_prepare_database(get_settings()))
    console.print("database is up to date")


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '1d' (or a bare number of seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 30m, 2h or 1d") from None


@app.command()
def stuck(
    older_than: Annotated[str, typer.Option(help="not moved for this long: 30m, 2h, 1d")] = "2h",
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
) -> None:
    """List orders that have not moved, with why they wait and a Temporal UI link."""
    from orderflow.db.session import make_engine, make_session_factory
    from orderflow.ops import find_stuck
    from orderflow.temporal_client import connect

    settings = get_settings()
    age = parse_duration(older_than)

    async def go() -> list:
        engine = make_engine(settings.resolved_database_url, pool_size=2)
        try:
            client = await connect(settings.resolved_temporal_address, settings.temporal_namespace)
            return await find_stuck(make_session_factory(engine), client, settings, age, status)
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    out = Console()
    if not rows:
        out.print(f"no open order has stood still for {age}")
        return
    table = Table(title=f"{len(rows)} order(s) not moved for {age}")
    for col in ("order", "status", "waiting", "why", "Temporal UI"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r.order_id, r.status, str(r.waiting).split(".")[0], r.why, r.link)
    out.print(table)


@app.command()
def bench(
    api_url: Annotated[str | None, typer.Option("--api", help="API base URL")] = None,
    token: Annotated[
        str | None, typer.Option(help="admin token (ORDERFLOW_BOOTSTRAP_TOKEN)")
    ] = None,
    orders: Annotated[int, typer.Option(help="orders to offer")] = 2000,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 32,
    rate: Annotated[
        float | None,
        typer.Option(help="orders per second (default: as fast as the concurrency allows)"),
    ] = None,
    mix: Annotated[str, typer.Option(help="realistic or touchless")] = "realistic",
    baseline: Annotated[bool, typer.Option(help="also run bare Temporal skeletons")] = False,
    backlog: Annotated[int, typer.Option(help="instead: N orders waiting for approval")] = 0,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    plot_file: Annotated[
        Path | None, typer.Option("--plot", help="PNG of throughput and latency over time")
    ] = None,
) -> None:
    """Measure a running stack through its API (and Temporal itself with --baseline)."""
    from orderflow import bench as b
    from orderflow.temporal_client import connect

    settings = get_settings()
    api = (api_url or f"http://{settings.host}:{settings.api_port}").rstrip("/")
    admin = token or settings.bootstrap_token
    if not admin:
        console.print("[red]give an admin token with --token or ORDERFLOW_BOOTSTRAP_TOKEN[/red]")
        raise typer.Exit(2)
    if mix not in b.MIXES:
        raise typer.BadParameter(f"--mix must be one of {', '.join(b.MIXES)}")

    async def go() -> dict:
        if backlog:
            return await b.bench_backlog(api, admin, backlog, concurrency, console)
        report = await b.bench_pipeline(api, admin, orders, concurrency, rate, mix, console)
        db = await b.count_in_db(settings.resolved_database_url, report["channel"])
        report["database"] = db
        for problem in b.check_counts(report, db):
            report["errors"][problem] = report["errors"].get(problem, 0) + 1
        if baseline:
            client = await connect(settings.resolved_temporal_address, settings.temporal_namespace)
            report["baseline"] = []
            for kind in ("activity", "local"):
                console.print(f"baseline: {kind} skeleton …")
                res = await b.run_skeleton(client, kind, orders, concurrency)
                if res["per_second"] and report["completed_per_second"]:
                    res["ratio"] = round(report["completed_per_second"] / res["per_second"], 2)
                report["baseline"].append(res)
        return report

    report = asyncio.run(go())
    if out:
        out.write_text(b.to_json(report))
    if plot_file and not backlog:
        b.plot(report, plot_file)
    if backlog:
        console.print(b.to_json(report))
    else:
        console.print(b.summarize(report))
    if report["errors"]:
        raise typer.Exit(1)


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".xlsx or .csv")],
    channel: Annotated[str, typer.Option(help="the orders' channel")] = "import",
    token: Annotated[
        str | None, typer.Option(help="a sales or admin token (default ORDERFLOW_BOOTSTRAP_TOKEN)")
    ] = None,
    api_url: Annotated[str | None, typer.Option("--api", help="API base URL")] = None,
) -> None:
    """Import a sheet through the API, follow its progress, and save the result file."""
    from rich.progress import Progress

    settings = get_settings()
    api = (api_url or f"http://{settings.host}:{settings.api_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {token or settings.bootstrap_token or ''}"}
    with httpx.Client(base_url=api, headers=headers, timeout=120) as http:
        with file.open("rb") as fh:
            r = http.post("/imports", files={"file": (file.name, fh)}, data={"channel": channel})
        if r.status_code >= 400:
            console.print(f"[red]{r.status_code}: {r.json().get('detail')}[/red]")
            raise typer.Exit(1)
        summary = r.json()
        with Progress(console=console) as bar:
            task = bar.add_task(f"importing {file.name}", total=summary["orders"])
            while summary["status"] != "done":
                time.sleep(0.5)
                summary = http.get(f"/imports/{summary['id']}").json()
                done = (
                    summary["orders_created"]
                    + summary["orders_duplicate"]
                    + summary["orders_rejected"]
                )
                bar.update(task, completed=done)
            bar.update(task, completed=summary["orders"])
        out = file.with_name(f"{file.stem}-result.xlsx")
        out.write_bytes(http.get(summary["result_url"]).content)
    console.print(
        f"{summary['orders_created']} order(s) created, "
        f"{summary['orders_duplicate']} already imported, "
        f"{summary['orders_rejected']} refused ({summary['rows_rejected']} row(s)); "
        f"row by row: {out}"
    )


@app.command()
def receiver(port: Annotated[int, typer.Option(help="port to listen on")] = 9999) -> None:
    """A local webhook receiver that prints each alert or notice it gets (for demos)."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                text = json.loads(body).get("text", body.decode())
            except ValueError:
                text = body.decode(errors="replace")
            console.print(f"{self.headers.get('Idempotency-Key', '-')}  {text}", markup=False)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    console.print(f"listening on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


@users_app.command("create")
def users_create(
    name: str,
    role: Annotated[
        str,
        typer.Option(
            help="admin, sales, credit_controller, sales_manager, director, ops or channel"
        ),
    ],
) -> None:
    """Create a user; the token is printed as the last line."""
    from orderflow.api.auth import create_user
    from orderflow.db.session import make_engine, make_session_factory

    async def go() -> str:
        engine = make_engine(get_settings().resolved_database_url, pool_size=1)
        try:
            async with make_session_factory(engine)() as session:
                token = await create_user(session, name, role)
                await session.commit()
                return token
        finally:
            await engine.dispose()

    try:
        token = asyncio.run(go())
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    console.print(f"created {name} with role {role}; the token is shown once:")
    print(token)


if __name__ == "__main__":
    app()
