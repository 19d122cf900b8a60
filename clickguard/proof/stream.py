"""Live measurements of the running pipeline, shared by chaos, the capacity bench and the demo.

Consumer lag is Kafka's end offsets of the raw topic minus what the streaming job has COMMITTED,
read from the exactly-once ledger (``batch_ledger.offsets`` = ``{partition: [first, last]}`` of
each committed batch) — not from Spark's checkpoint, so lag only falls when rows are in the
database. Every probe returns None instead of raising when its service is down (that is normal
during a fault).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from clickguard import db
from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings

CONSUMED_SQL = """
SELECT key::int, max((value->>1)::bigint) + 1
FROM batch_ledger, jsonb_each(offsets)
WHERE jsonb_typeof(offsets) = 'object' AND key ~ '^[0-9]+$' AND jsonb_typeof(value) = 'array'
GROUP BY key
"""  # rows of another shape (e.g. synthetic API-bench ledger rows) are not stream progress


def committed_offsets(conn: psycopg.Connection) -> dict[int, int]:
    """Next offset to read per raw-topic partition, as committed in the batch ledger."""
    return {int(p): int(o) for p, o in conn.execute(CONSUMED_SQL).fetchall()}


def lag_from(end: dict[int, int], committed: dict[int, int]) -> int:
    """Records in Kafka not yet committed to the database (over all partitions)."""
    return sum(max(0, high - committed.get(p, 0)) for p, high in end.items())


def probe_lag(settings: Settings, conn: psycopg.Connection | None = None) -> int | None:
    """Current lag, or None when Kafka or PostgreSQL cannot be read right now."""
    try:
        end = kafka_helpers.end_offsets(settings, settings.topic_raw, timeout=2.0)
        if not end:
            return None
        if conn is not None:
            return lag_from(end, committed_offsets(conn))
        with db.connect(settings, "reader") as c:
            return lag_from(end, committed_offsets(c))
    except Exception:  # noqa: BLE001 - a probe during a fault must not raise
        return None


def wait_committed(
    settings: Settings, targets: dict[int, int], timeout: float,
    progress: Any = None,
) -> bool:
    """Wait until the ledger has committed past ``targets`` ({partition: last offset})."""
    deadline = time.monotonic() + timeout
    last_note = 0.0
    while time.monotonic() < deadline:
        try:
            with db.connect(settings, "reader") as conn:
                done = committed_offsets(conn)
            behind = {p: o for p, o in targets.items() if done.get(p, 0) <= o}
            if not behind:
                return True
            if progress and time.monotonic() - last_note > 5:
                last_note = time.monotonic()
                left = sum(o + 1 - done.get(p, 0) for p, o in behind.items())
                progress(f"  waiting for the stream to commit {left:,} more records")
        except psycopg.Error:
            pass
        time.sleep(0.5)
    return False


def wait_caught_up(settings: Settings, timeout: float, echo: Any = None) -> bool:
    """Wait until the stream committed everything currently in the raw topic."""
    end = kafka_helpers.end_offsets(settings, settings.topic_raw, timeout=5)
    targets = {p: high - 1 for p, high in end.items() if high > 0}
    return wait_committed(settings, targets, timeout, echo) if targets else True


@dataclass
class Sample:
    t: float  # seconds since the monitor started
    at: datetime
    lag: int | None
    stored_total: int | None


@dataclass
class LagMonitor:
    """Samples lag and the stored-event count in a background thread."""

    settings: Settings
    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lag-monitor")

    def start(self) -> LagMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            lag = stored = None
            try:
                if conn is None or conn.closed:
                    conn = db.connect(self.settings, "reader", autocommit=True)
                lag = probe_lag(self.settings, conn)
                row = conn.execute(
                    "SELECT coalesce(sum(stored), 0) FROM batch_ledger"
                ).fetchone()
                stored = int(row[0]) if row else None
            except Exception:  # noqa: BLE001 - the database may be the thing we broke
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                conn = None
            self.samples.append(Sample(round(self.elapsed(), 2), datetime.now(UTC), lag, stored))
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]
