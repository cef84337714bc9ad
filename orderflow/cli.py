"""The `orderflow` command: up, worker, api, migrate, users."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar

import httpx
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from services.config import Settings, get_settings

if TYPE_CHECKING:  # the command line imports the heavy parts only in the command that runs
    from sqlalchemy.ext.asyncio import AsyncSession

    from db.models import User
    from orderflow.embedded import ManagedProcess
    from orderflow.supervisor import Child

T = TypeVar("T")

app = typer.Typer(
    help="Orderflow: sales orders as durable Temporal workflows.", no_args_is_help=True
)
users_app = typer.Typer(help="Manage API users and their tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
console = Console(stderr=True)


class EmbeddedServer(Protocol):
    """EmbeddedPostgres and EmbeddedTemporal, as the supervisor starts them."""

    @property
    def process(self) -> ManagedProcess | None: ...

    def stop(self) -> None: ...


def _logging() -> None:
    from orderflow.logs import setup_logging

    setup_logging()  # JSON lines into the embedded stack's worker.log and api.log


async def _prepare_database(settings: Settings) -> None:
    """Migrations, demo data and the bootstrap token: everything `up` needs in PostgreSQL."""
    from api.auth import ensure_token
    from db.migrate import upgrade
    from db.seed import load_demo_data
    from db.session import make_engine, make_session_factory

    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session:
            await load_demo_data(session)
            if settings.bootstrap_token:
                # A new value retires the previous bootstrap token.
                valid = await ensure_token(session, "bootstrap", "admin", settings.bootstrap_token)
                await session.commit()
                if not valid:
                    console.print(
                        "[red]ORDERFLOW_BOOTSTRAP_TOKEN was revoked (or retired) and stays so: "
                        "set a new value to get a working admin token[/red]"
                    )
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
    from orderflow.supervisor import AlertSender, Child, CrashLoop, Supervisor

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
    sup = Supervisor(_say_to(home / "supervisor.log"))
    alerts: AlertSender | None = None
    code = 0
    try:
        env = dict(os.environ)
        env["ORDERFLOW_SECRET_KEY"] = settings.secret_key or ""
        if not settings.database_url:
            console.print("starting PostgreSQL …")
            pg = EmbeddedPostgres(home / "pg", h, settings.pg_port)
            sup.start(Child("postgres", _starter(pg.start, pg), home / "postgres.log", 30))
            env["ORDERFLOW_DATABASE_URL"] = pg.local_url
            settings = settings.model_copy(update={"database_url": pg.local_url})
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
            log_file = home / "temporal.log"
            sup.start(Child("temporal", _starter(lambda: tmp.start(log_file), tmp), log_file))
            env["TEMPORAL_ADDRESS"] = tmp.address
        console.print("migrating and loading demo data …")
        asyncio.run(_prepare_database(settings))
        children = _app_children(settings, env, home)
        for child in children:
            sup.start(child)
        _wait_healthy(settings, children, lambda: stopping)
        alerts = AlertSender(
            settings.resolved_temporal_address, settings.temporal_namespace, settings.task_queue
        )
        sup.on_restart = alerts
        _banner(settings)
        sup.run(lambda: stopping)
    except CrashLoop as err:
        console.print(f"[red]{err}; stopping the stack[/red]")
        logging.getLogger("orderflow.supervisor").error("%s; stopping the stack", err)
        code = 1
    except (RuntimeError, TimeoutError, OSError) as err:
        console.print(f"[red]could not start: {err}[/red]")
        code = 1
    finally:
        console.print("stopping …")
        if alerts is not None:
            alerts.close()
        sup.stop()
        console.print("stopped; data kept in " + str(home))
    if code:
        raise typer.Exit(code)


def _say_to(log_file: Path) -> Callable[[str], None]:
    """The supervisor's messages: on the console and, with the date, in supervisor.log."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    sup_log = logging.getLogger("orderflow.supervisor")
    sup_log.addHandler(handler)
    sup_log.setLevel(logging.INFO)

    def say(message: str) -> None:
        console.print(f"[yellow]{message}[/yellow]")
        sup_log.warning(message)

    return say


def _starter(start: Callable[[], None], server: EmbeddedServer) -> Callable[[], ManagedProcess]:
    """A start function for the supervisor: start (and wait until ready), or clean up."""

    def go() -> ManagedProcess:
        try:
            start()
        except BaseException:
            server.stop()
            raise
        assert server.process is not None, "a started server has its process"
        return server.process

    return go


def _app_children(settings: Settings, env: dict[str, str], home: Path) -> list[Child]:
    """The worker(s) and the API, as supervised children."""
    from orderflow.embedded import spawn
    from orderflow.supervisor import Child

    py = sys.executable
    worker_args = [py, "-m", "orderflow.cli", "worker"]

    def spawner(name: str, args: list[str]) -> Callable[[], ManagedProcess]:
        return lambda: spawn(name, args, home / f"{name}.log", env=env)

    # A worker is given its graceful shutdown to finish the activities in flight.
    grace = settings.worker_graceful_shutdown_seconds + 10
    workers = [
        Child(name, spawner(name, worker_args), home / f"{name}.log", grace, group="app")
        for name in ["worker"] + [f"worker-{i}" for i in range(2, settings.workers + 1)]
    ]
    api = Child(
        "api",
        spawner("api", [py, "-m", "orderflow.cli", "api", "--port", str(settings.api_port)]),
        home / "api.log",
        group="app",  # stopped with the workers, at the same time
    )
    return [*workers, api]


def _wait_healthy(
    settings: Settings, children: list[Child], stopping: Callable[[], bool]
) -> None:
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
        f"Console      {api}/ui  (sign in with a token)",
        f"Temporal UI  {settings.temporal_ui_url}"
        if not settings.temporal_address
        else f"Temporal     {settings.temporal_address} (external)",
        f"Logs, data   {settings.home.resolve()}",
    ]
    if not settings.bootstrap_token:
        lines.append("Token        orderflow users create me --role admin")
    lines.append("A part that dies is restarted (see supervisor.log); Ctrl-C stops everything;")
    lines.append("orders in flight carry on at the next `make up`.")
    console.print(Panel("\n".join(lines), title="Orderflow is up", expand=False))


@app.command()
def worker() -> None:
    """Run an order worker against the configured PostgreSQL and Temporal."""
    from workers.main import run

    _logging()
    settings = get_settings()
    with asyncio.Runner(loop_factory=_loop_factory(settings.uvloop)) as runner:
        runner.run(run(settings))


def _loop_factory(wanted: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
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

    from api.main import create_app

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
    from db.session import make_engine, make_session_factory
    from services.stuck import find_stuck
    from services.temporal import connect

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
    history: Annotated[
        int,
        typer.Option(help="instead: write N orders of history to a scratch database, time reads"),
    ] = 0,
    keep: Annotated[
        bool, typer.Option(help="with --history: keep the scratch database afterwards")
    ] = False,
    import_rows: Annotated[
        int, typer.Option(help="instead: upload a sheet of N rows (20 per order), time it")
    ] = 0,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None,
    plot_file: Annotated[
        Path | None, typer.Option("--plot", help="PNG of throughput and latency over time")
    ] = None,
    soak: Annotated[
        str | None,
        typer.Option(
            help="run this long (30m, 1h) at --rate, or at half the sustained rate measured "
            "first; reports the worker's and API's memory slope in MB per hour"
        ),
    ] = None,
) -> None:
    """Measure a running stack through its API (and Temporal itself with --baseline)."""
    from bench import missing_libraries

    if missing := missing_libraries():
        console.print(
            f"[red]orderflow bench needs the optional bench extra ({', '.join(missing)} "
            "missing): pip install -e '.\\[bench]'[/red]"  # \\[: a bracket, not rich markup
        )
        raise typer.Exit(2)
    from bench import driver as b
    from services.temporal import connect

    settings = get_settings()
    api = (api_url or f"http://{settings.host}:{settings.api_port}").rstrip("/")
    admin = token or settings.bootstrap_token
    if not admin:
        console.print("[red]give an admin token with --token or ORDERFLOW_BOOTSTRAP_TOKEN[/red]")
        raise typer.Exit(2)
    if mix not in b.MIXES:
        raise typer.BadParameter(f"--mix must be one of {', '.join(b.MIXES)}")
    soak_s = parse_duration(soak).total_seconds() if soak else 0.0

    async def go() -> dict:
        if history:
            from bench.reads import bench_reads

            client = await connect(settings.resolved_temporal_address, settings.temporal_namespace)
            return await bench_reads(
                settings, client, history, keep=keep, progress=console.print
            )
        if import_rows:
            from bench.imports import bench_import

            return await bench_import(api, admin, import_rows, console.print)
        if backlog:
            return await b.bench_backlog(api, admin, backlog, concurrency, console)
        n, pace = orders, rate
        if soak_s:
            pace = rate or round(await b.calibrate(api, admin, concurrency, mix, console) / 2, 2)
            n = max(1, int(pace * soak_s))
            console.print(f"soak: {n} orders over {soak_s:.0f} s at {pace} orders/s")
        report = await b.bench_pipeline(api, admin, n, concurrency, pace, mix, console)
        samples = report.pop("_rss_samples")
        if soak_s:
            report["soak"] = {"duration_s": soak_s, "rate": pace, **b.soak_report(report, samples)}
        report.pop("_accounted", None)
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
    other_mode = backlog or history or import_rows
    if plot_file and not other_mode:
        b.plot(report, plot_file)
    if other_mode:
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
def reconcile(
    sku: Annotated[list[str] | None, typer.Option(help="only this SKU (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Check the books against the shelves (docs/reconcile.md); exit 1 when something is off."""
    from orderflow.books import reconcile_command

    raise typer.Exit(reconcile_command(get_settings(), sku or [], as_json))


@app.command()
def count(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".xlsx or .csv")],
    reason: Annotated[str, typer.Option(help="why this count (kept in the audit)")],
    count_id: Annotated[str | None, typer.Option(help="default: the file's fingerprint")] = None,
    token: Annotated[str | None, typer.Option(help="an ops or admin token")] = None,
    api_url: Annotated[str | None, typer.Option("--api", help="API base URL")] = None,
) -> None:
    """Book a cycle count sheet (sku, counted, bin_location); exit 1 when stock was off."""
    from orderflow.books import count_command

    settings = get_settings()
    api = (api_url or f"http://{settings.host}:{settings.api_port}").rstrip("/")
    headers = {"Authorization": f"Bearer {token or settings.bootstrap_token or ''}"}
    with httpx.Client(base_url=api, headers=headers, timeout=120) as http:
        raise typer.Exit(count_command(http, file, reason, count_id, Console()))


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


async def _with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work(session)` against the configured database and commit."""
    from db.session import make_engine, make_session_factory

    engine = make_engine(get_settings().resolved_database_url, pool_size=1)
    try:
        async with make_session_factory(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


@users_app.command("create")
def users_create(
    name: str,
    role: Annotated[
        str,
        typer.Option(
            help="admin, sales, credit_controller, sales_manager, director, ops or channel"
        ),
    ],
    channel: Annotated[
        str | None,
        typer.Option(help="for role channel: the one channel this token acts for (required)"),
    ] = None,
) -> None:
    """Create a user; the token is printed as the last line."""
    from api.auth import create_user

    try:
        token = asyncio.run(_with_session(lambda s: create_user(s, name, role, channel)))
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    bound = f" for channel {channel}" if channel else ""
    console.print(f"created {name} with role {role}{bound}; the token is shown once:")
    print(token)


@users_app.command("list")
def users_list() -> None:
    """Every user: id, name, role, channel, and whether its token still works."""
    from sqlalchemy import select

    from db.models import User

    async def rows(s: AsyncSession) -> list[User]:
        return list((await s.scalars(select(User).order_by(User.id))).all())

    table = Table(title="users (tokens are never shown again)")
    for col in ("id", "name", "role", "channel", "state", "created"):
        table.add_column(col)
    for u in asyncio.run(_with_session(rows)):
        state = "active" if u.active else f"revoked {u.revoked_at:%Y-%m-%d %H:%M}"
        name = u.name + (" (bootstrap)" if u.bootstrap else "")
        table.add_row(str(u.id), name, u.role, u.channel or "", state, f"{u.created_at:%Y-%m-%d}")
    Console().print(table)


@users_app.command("revoke")
def users_revoke(
    name_or_id: Annotated[str, typer.Argument(help="a user id, or a name held by one user")],
) -> None:
    """Revoke a token for good. API processes refuse it within 30 s (their token cache)."""
    from api.auth import find_users, revoke_user

    async def go(s: AsyncSession) -> list[User]:
        found = await find_users(s, name_or_id)
        if len(found) != 1:
            return found
        await revoke_user(s, found[0].id)
        return found

    found = asyncio.run(_with_session(go))
    if not found:
        console.print(f"[red]no active user {name_or_id}[/red]")
        raise typer.Exit(2)
    if len(found) > 1:
        ids = ", ".join(f"{u.id} ({u.role})" for u in found)
        console.print(
            f"[red]{len(found)} active users are named {name_or_id}: {ids}; give the id[/red]"
        )
        raise typer.Exit(2)
    user = found[0]
    console.print(
        f"revoked user {user.id} {user.name} ({user.role}); API processes refuse its token "
        "within 30 s"
    )


if __name__ == "__main__":
    app()
