"""GET /health: 200 once PostgreSQL and Temporal both answer; never hangs.

Each part gets a short deadline and both are asked at once, so the probe answers within
CHECK_TIMEOUT_S whatever state they are in. The answer names the part that is down and
never shows exception text (that goes to the API's log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from api.deps import AppState, StateDep

router = APIRouter(tags=["health"])
log = logging.getLogger("orderflow.api")

CHECK_TIMEOUT_S = 2.0


async def _postgres(state: AppState) -> None:
    async with state.sessions() as session:
        await session.execute(text("SELECT 1"))


async def _temporal(state: AppState) -> None:
    await state.client.service_client.check_health()


async def _check(name: str, probe: Callable[[], Awaitable[None]]) -> str:
    """'ok', 'down' or 'not answering'. A probe past its deadline is left to end on its own
    (its connection has its own deadline): waiting for its cancellation could hang."""
    task = asyncio.ensure_future(probe())
    done, _ = await asyncio.wait({task}, timeout=CHECK_TIMEOUT_S)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        log.warning("health: %s not answering within %.0f s", name, CHECK_TIMEOUT_S)
        return "not answering"
    err = task.exception()
    if err is not None:
        log.warning("health: %s down: %r", name, err)
        return "down"
    return "ok"


@router.get("/health")
async def health(state: StateDep) -> dict[str, str]:
    pg, tmp = await asyncio.gather(
        _check("postgres", lambda: _postgres(state)), _check("temporal", lambda: _temporal(state))
    )
    if pg != "ok" or tmp != "ok":
        down = [name for name, s in (("PostgreSQL", pg), ("Temporal", tmp)) if s != "ok"]
        raise HTTPException(
            503,
            {
                "status": "degraded",
                "down": " and ".join(down),
                "postgres": pg,
                "temporal": tmp,
            },
            headers={"Retry-After": "5"},
        )
    return {
        "status": "ok",
        "postgres": "ok",
        "temporal": "ok",
        "namespace": state.settings.temporal_namespace,
    }
