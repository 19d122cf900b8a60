"""The driver's heartbeat keeps one connection, and survives losing it."""

from __future__ import annotations

import json

from clickguard import db, stream_state
from clickguard.settings import Settings
from streaming_job.job import Beats


def _sessions(settings: Settings) -> int:
    with db.connect(settings, "writer", autocommit=True) as conn:
        return int(db.one(conn, "SELECT sessions FROM pg_stat_database"
                                " WHERE datname = current_database()")[0])


def _row(settings: Settings) -> tuple[str, dict[str, object]]:
    with db.connect(settings, "writer", autocommit=True) as conn:
        status, details = db.one(conn, "SELECT status, details FROM stream_heartbeat"
                                       " WHERE component = %s", (stream_state.DRIVER_COMPONENT,))
    return status, details if isinstance(details, dict) else json.loads(details)


def test_beats_share_a_connection_and_reconnect_after_it_dies(postgres_alone: Settings) -> None:
    settings = postgres_alone
    db.migrate(settings)
    beats = Beats(settings)
    try:
        before = _sessions(settings)
        for i in range(5):
            beats.beat("running", {"i": i})
        # 5 beats, 1 backend (the other two sessions are this test's own probes)
        assert _sessions(settings) - before == 1 + 1
        assert _row(settings) == ("running", {"i": 4})

        # its backend ends (what a PostgreSQL restart does to every session)
        assert beats.pg.conn is not None
        pid = beats.pg.conn.info.backend_pid
        with db.connect(settings, "superuser", autocommit=True) as su:
            assert db.one(su, "SELECT pg_terminate_backend(%s)", (pid,))[0] is True
        beats.beat("running", {"i": 5})  # meets the dead connection, opens a new one, writes
        assert _row(settings) == ("running", {"i": 5})
    finally:
        beats.close()
