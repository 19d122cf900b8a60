"""The PostgreSQL lease that makes exactly one of the warm drivers active, and its fencing token.

Every driver of node ``streaming`` starts Spark and warms up; only the holder of the
``stream_lease`` row of its stream (keyed by the checkpoint folder) starts the streaming query.

* **Acquire** (one atomic upsert): the row is free, or expired (``expires_at``, renewed every
  ``stream_lease_renew_s`` by the holder), or the holder's lease *session* is gone
  (``holder_backend`` not in ``pg_stat_activity``: a SIGKILLed process's connection closes at
  once, so a standby takes over in well under a second instead of waiting for the TTL). Each
  acquisition increments ``epoch``. Right after a PostgreSQL restart every session is gone, so
  for ``ttl`` seconds only a free row can be taken: the incumbent gets time to reconnect.
* **Fence**: the batch transaction runs :data:`FENCE` (``SELECT ... FOR SHARE`` on our epoch)
  just before COMMIT. A takeover's UPDATE of the row waits for a running batch commit and a batch
  commit after a takeover finds no row: :class:`LeaseLost`, rolled back, nothing written. A
  driver that was paused (SIGSTOP, long GC) past its TTL therefore commits nothing when it wakes.
* **Renew** in a background thread; a renewal that finds the row taken marks the lease lost and
  the job exits with :data:`FENCED_RC` (the supervisor restarts it at once as a standby).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import psycopg

from clickguard import db
from clickguard.settings import Settings

log = logging.getLogger("streaming_job.lease")

FENCED_RC = 75  # exit code of a driver that lost its lease: restart as standby, not a failure

# the lease row ``l`` may be taken: free, or (not right after a PostgreSQL restart) expired or
# its holder's session gone
TAKEABLE = """l.holder IS NULL
   OR (clock_timestamp() - pg_postmaster_start_time() > make_interval(secs => %(ttl)s)
       AND (l.expires_at < clock_timestamp()
            OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.holder_backend)))"""
ACQUIRE = """
INSERT INTO stream_lease AS l (name, holder, holder_backend, epoch, acquired_at, renewed_at,
                               expires_at)
VALUES (%(name)s, %(holder)s, pg_backend_pid(), 1, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, holder_backend = EXCLUDED.holder_backend, epoch = l.epoch + 1,
    acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at
WHERE """ + TAKEABLE + """
RETURNING epoch
"""
# a standby's poll (4 a second) reads first: ACQUIRE locks the row even when it may not take
# it, and that lock costs a transaction id, a WAL record and a WAL flush per poll (about twice
# the backend CPU of this read, which writes nothing)
MAY_TAKE = "SELECT " + TAKEABLE + " FROM stream_lease l WHERE l.name = %(name)s"
RENEW = """
UPDATE stream_lease SET renewed_at = clock_timestamp(), holder_backend = pg_backend_pid(),
       expires_at = clock_timestamp() + make_interval(secs => %(ttl)s)
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s
"""
RELEASE = """
UPDATE stream_lease SET holder = NULL, holder_backend = NULL, expires_at = clock_timestamp()
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s
"""
# run inside the batch transaction, right before COMMIT: a takeover serializes with it
FENCE = """
SELECT 1 FROM stream_lease WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s
FOR SHARE
"""


class LeaseLost(RuntimeError):
    """This driver no longer holds the stream's lease: it must commit nothing more."""


def lease_name(settings: Settings) -> str:
    """One lease per stream: the drivers sharing a checkpoint compete for it."""
    return str(settings.checkpoint_dir.resolve())


def driver_id(slot: int | str | None = None) -> str:
    """``d<slot>:<pid>@<host>``: unique per process, readable in the ledger."""
    return f"d{slot if slot is not None else '-'}:{os.getpid()}@{socket.gethostname()}"


class Lease:
    """One driver's claim on the stream: acquire, renew in the background, fence commits."""

    def __init__(self, settings: Settings, holder: str, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or lease_name(settings)
        self.holder = holder
        self.ttl = settings.stream_lease_ttl_s
        self.epoch: int | None = None
        self.lost = threading.Event()
        # never hang behind a batch commit holding the row (FOR SHARE): retry next tick
        self.pg = db.KeptConnection(settings, "writer", setup=["SET lock_timeout = '1s'"])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _params(self) -> dict[str, object]:
        return {"name": self.name, "holder": self.holder, "epoch": self.epoch, "ttl": self.ttl}

    # -- protocol -------------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """One attempt; True (and ``epoch`` set) when this driver is now the holder."""
        try:
            conn = self.pg.get()
            may = conn.execute(MAY_TAKE, self._params()).fetchone()
            if may is not None and not may[0]:  # held (no row yet: the first start inserts it)
                return False
            row = conn.execute(ACQUIRE, self._params()).fetchone()
        except psycopg.errors.LockNotAvailable:
            return False
        except psycopg.OperationalError as exc:
            log.warning("lease: database unavailable: %s", str(exc).strip().splitlines()[0])
            self.pg.drop()
            return False
        if row is None:
            return False
        self.epoch = int(row[0])
        self.lost.clear()
        return True

    def wait_acquire(self, stopping: Callable[[], bool], on_tick: Callable[[], None]) -> bool:
        """Poll every ``stream_lease_poll_s`` until acquired (True) or ``stopping()``."""
        while not stopping():
            if self.try_acquire():
                return True
            on_tick()
            time.sleep(self.settings.stream_lease_poll_s)
        return False

    def renew(self) -> bool:
        """Extend the lease; False = someone else holds it now (we are fenced). Raises on a
        database error (the caller retries; the fence still protects every commit)."""
        cur = self.pg.get().execute(RENEW, self._params())
        return cur.rowcount == 1

    def start_renewing(self, on_lost: Callable[[], None]) -> None:
        """Background renewal; calls ``on_lost`` once if the lease was taken over."""

        def loop() -> None:
            while not self._stop.wait(self.settings.stream_lease_renew_s):
                try:
                    ok = self.renew()
                except psycopg.Error as exc:
                    log.warning("lease renewal failed: %s", str(exc).strip().splitlines()[0])
                    self.pg.drop()
                    continue
                if not ok:
                    log.error("lease of %s lost (epoch %s taken over): fenced", self.name,
                              self.epoch)
                    self.lost.set()
                    on_lost()
                    return

        self._thread = threading.Thread(target=loop, name="lease-renew", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Clean stop: free the row so that a standby takes over at once (best effort)."""
        self._stop.set()
        if self.epoch is None or self.lost.is_set():
            return
        try:
            self.pg.get().execute(RELEASE, self._params())
        except psycopg.Error as exc:
            log.warning("lease release failed: %s", str(exc).strip().splitlines()[0])

    def close(self) -> None:
        self._stop.set()
        self.pg.drop()

    def fence(self, cur: psycopg.Cursor) -> None:
        """Inside the batch transaction: raise :class:`LeaseLost` unless we still hold it."""
        cur.execute(FENCE, self._params())
        if cur.fetchone() is None:
            self.lost.set()
            raise LeaseLost(
                f"driver {self.holder} lost the lease of {self.name} (epoch {self.epoch}): "
                "batch not committed"
            )
