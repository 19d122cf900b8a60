"""The driver lease on a real PostgreSQL: one holder at a time, takeover when the holder's
session dies (at once) or its lease expires (TTL), and the fence that rolls back a batch
commit of a driver that lost the lease."""

from __future__ import annotations

import time
import uuid

import pytest

from clickguard import db
from clickguard.settings import Settings
from clickguard_stack.manager import Stack
from streaming_job.lease import Lease, LeaseLost

pytestmark = pytest.mark.integration


def _lease(settings: Settings, name: str, holder: str, ttl: float = 2.0) -> Lease:
    lease = Lease(settings.model_copy(update={"stream_lease_ttl_s": ttl}), holder, name)
    return lease


def _drop(settings: Settings, name: str) -> None:
    with db.connect(settings, "writer", autocommit=True) as conn:
        conn.execute("DELETE FROM stream_lease WHERE name = %s", (name,))


def test_one_holder_takeover_on_dead_session_and_on_expiry(stack: Stack) -> None:
    s = stack.settings
    name = f"test-lease-{uuid.uuid4().hex[:8]}"
    a, b = _lease(s, name, "a"), _lease(s, name, "b")
    try:
        assert a.try_acquire() and a.epoch == 1
        assert not b.try_acquire()  # held and alive
        assert a.renew()
        # the holder's session dies (a SIGKILLed driver): b takes over at once, epoch 2
        a.pg.drop()
        t0 = time.monotonic()
        assert b.try_acquire() and b.epoch == 2
        assert time.monotonic() - t0 < 2.0  # no TTL wait
        assert not a.renew()  # a is fenced: its renewal finds the row taken
        # b stops renewing but keeps its session (a paused driver): a waits for the TTL
        assert not a.try_acquire()
        deadline = time.monotonic() + 10
        while not a.try_acquire():
            assert time.monotonic() < deadline, "lease never expired"
            time.sleep(0.2)
        assert a.epoch == 3 and not b.renew()
        # a clean release hands over at once
        a.release()
        assert b.try_acquire() and b.epoch == 4
    finally:
        a.close()
        b.close()
        _drop(s, name)


def test_a_standby_polling_a_held_lease_writes_nothing(stack: Stack) -> None:
    """A standby polls 4 times a second while it waits: each poll used to lock the lease row
    (a transaction id, a WAL record and a WAL flush each time, with nobody to take over)."""
    s = stack.settings
    name = f"test-poll-{uuid.uuid4().hex[:8]}"
    a, b = _lease(s, name, "a", ttl=30.0), _lease(s, name, "b", ttl=30.0)
    try:
        assert a.try_acquire()
        with db.connect(s, "writer", autocommit=True) as conn:
            def position() -> tuple[int, int]:
                """(next transaction id, WAL bytes written so far): no statistics delay."""
                row = conn.execute(
                    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
                    " pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").fetchone()
                assert row is not None
                return int(row[0]), int(row[1])

            before = position()
            assert not any(b.try_acquire() for _ in range(100))
            after = position()
        # the polls used 100 transaction ids and wrote ~100 lock records; what else runs on the
        # server (autovacuum, checkpoints) may write a little
        assert after[0] - before[0] < 5 and after[1] - before[1] < 4_000, (before, after)
    finally:
        a.close()
        b.close()
        _drop(s, name)


def test_fence_rolls_back_a_commit_after_takeover(stack: Stack) -> None:
    s = stack.settings
    name = f"test-fence-{uuid.uuid4().hex[:8]}"
    old, new = _lease(s, name, "old", ttl=1.0), _lease(s, name, "new", ttl=1.0)
    marker = f"fence-{uuid.uuid4().hex[:8]}"
    try:
        assert old.try_acquire()
        with db.connect(s, "writer") as conn:
            # the old holder commits while it holds the lease
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("INSERT INTO stream_heartbeat (component, beat_at, status) "
                            "VALUES (%s, now(), 'ok')", (marker,))
                old.fence(cur)
            # it is "paused" past its TTL; the other driver takes over
            deadline = time.monotonic() + 10
            while not new.try_acquire():
                assert time.monotonic() < deadline
                time.sleep(0.2)
            # it wakes and tries to commit: the fence raises, the transaction rolls back
            with pytest.raises(LeaseLost), conn.transaction(), conn.cursor() as cur:
                cur.execute("UPDATE stream_heartbeat SET status = 'fenced write' "
                            "WHERE component = %s", (marker,))
                old.fence(cur)
            assert old.lost.is_set()
            row = conn.execute("SELECT status FROM stream_heartbeat WHERE component = %s",
                               (marker,)).fetchone()
            assert row == ("ok",)
            conn.execute("DELETE FROM stream_heartbeat WHERE component = %s", (marker,))
            conn.commit()
    finally:
        old.close()
        new.close()
        _drop(s, name)
