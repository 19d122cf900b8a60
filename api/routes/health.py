"""GET /health — liveness and database reachability; always open (no API key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PoolDep
from api.schemas import Health
from clickguard import __version__

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "Database unreachable"}},
)
async def health(pool: PoolDep) -> JSONResponse:
    """200 when PostgreSQL answers within the pool timeout, else 503 with the same shape."""
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        ok = True
    except Exception:  # noqa: BLE001 - any failure to reach the database means 'disconnected'
        ok = False
    body = Health(
        status="healthy" if ok else "unhealthy",
        database="connected" if ok else "disconnected",
        version=__version__,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
