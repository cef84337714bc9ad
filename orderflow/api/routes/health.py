"""GET /health: 200 once PostgreSQL and Temporal both answer."""

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from orderflow.api.deps import SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(state: StateDep, session: SessionDep) -> dict[str, str]:
    problems = {}
    try:
        await session.execute(text("SELECT 1"))
    except Exception as err:  # report, never crash the probe
        problems["postgres"] = str(err)
    try:
        await state.client.service_client.check_health()
    except Exception as err:
        problems["temporal"] = str(err)
    if problems:
        raise HTTPException(503, {"status": "degraded", **problems})
    return {
        "status": "ok",
        "postgres": "ok",
        "temporal": "ok",
        "namespace": state.settings.temporal_namespace,
    }
