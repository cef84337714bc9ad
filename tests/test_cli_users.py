"""`orderflow users`: channel tokens bound at creation, listed without secrets, revoked."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from orderflow.embedded import EmbeddedPostgres


def _users(pg: EmbeddedPostgres, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ORDERFLOW_DATABASE_URL": pg.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "orderflow.cli", "users", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_channel_tokens_are_bound_listed_and_revoked(pg: EmbeddedPostgres):
    name = f"shop-{uuid.uuid4().hex[:6]}"
    unbound = _users(pg, "create", name, "--role", "channel")
    assert unbound.returncode == 2 and "--channel" in unbound.stderr
    wrong = _users(pg, "create", name, "--role", "sales", "--channel", "web")
    assert wrong.returncode == 2 and "only a channel token" in wrong.stderr

    made = _users(pg, "create", name, "--role", "channel", "--channel", "web")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("of_") and "for channel web" in made.stderr
    listed = _users(pg, "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if name in line)
    assert "web" in row and "active" in row and token not in listed.stdout

    twin = _users(pg, "create", name, "--role", "channel", "--channel", "web")
    assert twin.returncode == 0, twin.stderr
    ambiguous = _users(pg, "revoke", name)
    assert ambiguous.returncode == 2 and "give the id" in ambiguous.stderr
    user_id = row.split("│")[1].strip() if "│" in row else row.split()[0]
    revoked = _users(pg, "revoke", user_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "within 30 s" in revoked.stderr
    rows = [line for line in _users(pg, "list").stdout.splitlines() if name in line]
    assert sorted("revoked" in r for r in rows) == [False, True], rows
    assert _users(pg, "revoke", user_id).returncode == 2, "already revoked: no active user"
