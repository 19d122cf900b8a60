"""GET /health — liveness, database reachability and the stream's run state; always open.

``status`` is ``degraded`` (still 200: the API itself serves) while the streaming job is
crash-looping, so a dashboard polling /health sees a stuck stream without another call.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.db import fetch_one
from api.deps import PoolDep
from api.routes.stream import run_state
from api.schemas import Health
from clickguard import __version__, stream_state

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Database unreachable"}},
)
async def health(pool: PoolDep) -> JSONResponse:
    """200 when PostgreSQL answers within the pool timeout, else 503 with the same shape."""
    try:
        await fetch_one(pool, "SELECT 1")
        ok = True
    except Exception:  # noqa: BLE001 - any failure to reach the database means 'disconnected'
        ok = False
    stream: dict | None = None
    if ok:
        try:
            stream = await run_state(pool)
        except Exception as exc:  # noqa: BLE001 - the database answered; only this read failed
            stream = {"state": "unknown", "last_error": f"stream state unreadable: {exc}"[:200]}
    status = "healthy" if ok else "unhealthy"
    if stream and stream["state"] == stream_state.CRASH_LOOPING:
        status = "degraded"
    body = Health(
        status=status,
        database="connected" if ok else "disconnected",
        version=__version__,
        stream=stream,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)
