"""Live measurements of the running pipeline, shared by chaos, the capacity bench and the demo.

Consumer lag is :mod:`clickguard.ledger`'s (Kafka's end offsets of the raw topic minus what the
streaming job has COMMITTED to the exactly-once ledger), the same rule as the API and Dagster.
Every probe returns None instead of raising when its service is down (normal during a fault).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from clickguard import db, ledger
from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings


def committed_offsets(conn: psycopg.Connection) -> dict[int, int]:
    """Next offset to read per raw-topic partition, as committed in the batch ledger."""
    return ledger.committed_offsets(conn)


def probe_lag(settings: Settings, conn: psycopg.Connection | None = None) -> int | None:
    """Current lag, or None when Kafka or PostgreSQL cannot be read right now."""
    try:
        end = kafka_helpers.end_offsets(settings, settings.topic_raw, timeout=2.0)
        if not end:
            return None
        if conn is not None:
            return ledger.total_lag(end, ledger.committed_offsets(conn))
        with db.connect(settings, "reader") as c:
            return ledger.total_lag(end, ledger.committed_offsets(c))
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
        pg = db.KeptConnection(self.settings, "reader")

        def sample(conn: psycopg.Connection) -> tuple[int | None, int | None]:
            row = conn.execute("SELECT coalesce(sum(stored), 0) FROM batch_ledger").fetchone()
            return probe_lag(self.settings, conn), int(row[0]) if row else None

        while not self._stop.is_set():
            lag = stored = None
            try:
                lag, stored = pg.call(sample)
            except Exception:  # noqa: BLE001 - the database may be the thing we broke
                pg.drop()
            self.samples.append(Sample(round(self.elapsed(), 2), datetime.now(UTC), lag, stored))
            self._stop.wait(self.interval)
        pg.drop()

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]
