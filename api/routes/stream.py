"""GET /stream — stream health: last committed batch, events/s, heartbeats, consumer lag, the
supervisor's run state (``crash-looping`` when the same batch keeps failing) and the active
driver (the holder of the ``stream_lease`` row, else the driver of the newest batch).

Lag = Kafka end offsets of ``settings.topic_raw`` − the consumer position per partition, both
computed by ``clickguard.ledger`` (the one owner of the ledger's offsets format). The
Kafka probe runs in a thread with ``settings.api_lag_timeout_s`` and its result is reused for a
couple of seconds per worker, refreshed in the background, so /stream stays bounded when Kafka is
slow or down (the lag is then null with the reason).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from api.db import fetch_all, fetch_one
from api.deps import PoolDep, ReplyDep, SettingsDep
from api.schemas import StreamStatus
from clickguard import kafka as kafka_helpers
from clickguard import ledger, stream_state
from clickguard.settings import Settings

router = APIRouter(tags=["stream"])

LAST_BATCH_SQL = """
SELECT query_id, batch_id, started_at, committed_at, input_rows, stored, dlq, late, duplicates,
       anomalies, duration_ms, watermark, offsets, driver, driver_epoch
FROM batch_ledger ORDER BY committed_at DESC LIMIT 1
"""
LAST_MINUTE_SQL = """
SELECT coalesce(sum(input_rows), 0) AS input_rows, count(*) AS batches
FROM batch_ledger WHERE committed_at >= now() - interval '60 seconds'
"""
# the newest ledger rows, enough to see every partition of a busy topic
POSITIONS_SQL = """
SELECT offsets, driver, driver_epoch, committed_at
FROM batch_ledger ORDER BY committed_at DESC LIMIT 100
"""
# one row per stream (checkpoint); a stale row of an older checkpoint is expired, so the live
# holder sorts first
LEASE_SQL = """
SELECT holder, epoch, acquired_at, expires_at FROM stream_lease WHERE holder IS NOT NULL
ORDER BY expires_at > now() DESC NULLS LAST, renewed_at DESC NULLS LAST LIMIT 1
"""
HEARTBEAT_SQL = """
SELECT component, beat_at, status, extract(epoch FROM now() - beat_at)::float8 AS age_sec
FROM stream_heartbeat ORDER BY component
"""

RUN_STATE_SQL = """
SELECT (SELECT details FROM stream_heartbeat WHERE component = %(component)s) AS details,
       (SELECT max(committed_at) FROM batch_ledger) AS last_commit
"""


async def run_state(pool: Any) -> dict[str, Any]:
    """The supervisor's state (api.schemas.StreamRunState), as of the newest ledger commit."""
    row = await fetch_one(pool, RUN_STATE_SQL, {"component": stream_state.SUPERVISOR_COMPONENT})
    st = stream_state.effective_state(row["details"], row["last_commit"]) if row else None
    if st is None:
        return {"state": "unknown"}
    return {
        "state": st.state, "last_error": st.last_error,
        "last_error_at": st.last_error_at,
        "consecutive_failures": st.consecutive_failures, "last_batch_id": st.last_batch_id,
        "since": st.since,
    }


def active_driver(
    lease: dict[str, Any] | None, recent: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The lease holder (or, with no lease held, the driver of the newest batch) and its newest
    commit among ``recent`` ledger rows (newest first)."""
    if lease is not None:
        driver, epoch = lease["holder"], lease["epoch"]
        out = {"driver": driver, "epoch": epoch, "source": "lease", "since": lease["acquired_at"],
               "lease_expires_at": lease["expires_at"]}
    elif recent and recent[0]["driver"] is not None:
        driver, epoch = recent[0]["driver"], recent[0]["driver_epoch"]
        out = {"driver": driver, "epoch": epoch, "source": "ledger"}
    else:
        return None
    out["last_commit_at"] = next(
        (r["committed_at"] for r in recent
         if r["driver"] == driver and r["driver_epoch"] == epoch), None)
    return out


class LagProbe:
    """Kafka end offsets fetched off the event loop, bounded, and never waited for twice.

    The first call waits for one probe (at most ``api_lag_timeout_s``); later calls get the last
    result at once and, when it is older than ``reuse_s`` (``retry_s`` after a failure), start
    one background probe.
    """

    def __init__(self, settings: Settings, reuse_s: float = 2.0, retry_s: float = 10.0) -> None:
        self.settings = settings
        self.reuse_s = reuse_s
        self.retry_s = retry_s  # after a failure: do not build a Kafka client every 2 s
        self._result: tuple[dict[int, int] | None, str | None] | None = None
        self._checked = 0.0
        self._task: asyncio.Task[None] | None = None

    async def end_offsets(self) -> tuple[dict[int, int] | None, str | None]:
        """(end offset per partition, None) or (None, why it is unknown)."""
        failed = self._result is not None and self._result[0] is None
        stale = time.monotonic() - self._checked > (self.retry_s if failed else self.reuse_s)
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._probe())
        if self._result is None:
            await asyncio.shield(self._task)  # type: ignore[arg-type]
        assert self._result is not None
        return self._result

    async def _probe(self) -> None:
        timeout = self.settings.api_lag_timeout_s
        try:
            ends = await asyncio.wait_for(
                asyncio.to_thread(
                    kafka_helpers.end_offsets, self.settings, self.settings.topic_raw, timeout
                ),
                timeout + 0.5,
            )
            result: tuple[dict[int, int] | None, str | None] = (ends, None)
            if not ends:
                result = (None, f"topic {self.settings.topic_raw} not found")
        except TimeoutError:
            result = (None, f"Kafka did not answer within {timeout:g}s")
        except Exception as exc:  # noqa: BLE001 - any Kafka failure only makes lag unknown
            result = (None, f"Kafka unavailable: {type(exc).__name__}: {exc}"[:200])
        self._result, self._checked = result, time.monotonic()


async def get_lag_probe(request: Request) -> LagProbe:
    return request.app.state.lag_probe


LagProbeDep = Annotated[LagProbe, Depends(get_lag_probe)]


@router.get("/stream", response_model=StreamStatus)
async def stream(
    pool: PoolDep, reply: ReplyDep, settings: SettingsDep, probe: LagProbeDep
) -> Response:
    """Newest batch, events/s over the last minute, heartbeat ages, consumer lag and the
    active driver."""

    async def status() -> dict[str, Any]:
        last = await fetch_one(pool, LAST_BATCH_SQL)
        minute = await fetch_one(pool, ledger.RATE_SQL, {"window_s": ledger.RATE_WINDOW_S})
        beats = await fetch_all(pool, HEARTBEAT_SQL)
        lag: dict[str, Any] = {"total": None, "by_partition": {}, "error": None}
        recent = await fetch_all(pool, POSITIONS_SQL)
        positions = ledger.positions_from_rows(await fetch_all(pool, ledger.COMMITTED_SQL))
        if not positions:
            lag["error"] = "no ledger offsets for " + settings.topic_raw
        else:
            ends, error = await probe.end_offsets()
            if ends is None:
                lag["error"] = error
            else:
                by_part = {str(p): n for p, n in ledger.lag_by_partition(ends, positions).items()}
                lag = {"total": sum(by_part.values()), "by_partition": by_part, "error": None}
        return {
            "last_batch": last,
            "events_per_sec": ledger.rate_from(minute),
            "batches_last_minute": minute["batches"] if minute else 0,
            "heartbeats": beats,
            "consumer_lag": lag,
            "state": await run_state(pool),
            "active_driver": active_driver(await fetch_one(pool, LEASE_SQL), recent),
        }

    return await reply(StreamStatus, status)
