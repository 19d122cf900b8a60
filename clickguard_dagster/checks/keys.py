"""Key integrity of ``daily_sessions`` (blocking): no overlapping sessions, all events exist.

An event id the stream stored twice with two event times is two events (``events``' key is
``(event_id, event_ts)``): counted in the metadata, not a failure. Failing on it blocked every
downstream asset for the rest of the day after one producer reused ids (seen in a user trial).

``events`` is read up to each day's mark, i.e. the rows the materialization read.
"""


import dagster as dg

from clickguard.db import one
from clickguard_dagster.batch import (
    EVENTS,
    DayMarks,
    marks_metadata,
    marks_params,
)
from clickguard_dagster.resources import PostgresResource

# A duplicated session = two rows of one session_id whose time ranges overlap (the primary key
# cannot catch it because the starts differ). Some pair overlaps iff a session overlaps the next
# one of its id and day by start: one sort, no self-join whose plan depends on fresh statistics
# (with the table's statistics taken when it was empty, the join's nested loop ran > 11 minutes
# on 125,001 sessions).
OVERLAPS = """
SELECT session_id, session_start, next_start FROM (
  SELECT session_id, session_start, session_end,
   lead(session_start) OVER (PARTITION BY session_id, session_day ORDER BY session_start)
    AS next_start
  FROM daily_sessions WHERE session_day = ANY(%(days)s)
) s WHERE next_start <= session_end LIMIT 20
"""
# every session's event count must be found in `events` (as of the day's mark) for its id and
# time range
MISSING_EVENTS = """
SELECT s.session_id, s.session_start, s.events, (
  SELECT count(*) FROM events e WHERE e.session_id = s.session_id
   AND e.event_ts >= s.session_start AND e.event_ts <= s.session_end
   AND e.commit_ts <= m.mark) AS found
FROM daily_sessions s
JOIN unnest(%(days)s::date[], %(marks)s::timestamptz[]) AS m(day, mark) ON m.day = s.session_day
"""
# event ids stored more than once, each time with another event time: distinct events by the
# stream's contract (`events`' key is (event_id, event_ts), docs/streaming.md), reported, not a
# failure; byte-wise ("C") comparison: the same distinct ids, 0.8 instead of 1.05 s for 1 M events
REUSED_IDS = (
    f'SELECT count(*) - count(DISTINCT event_id COLLATE "C") FROM {EVENTS.snapshot_rows("e")}'
)


def check_session_keys(postgres: PostgresResource, marks: DayMarks) -> dg.AssetCheckResult:
    """``marks``: the day marks of daily_sessions' last run."""
    with postgres.connect() as conn:
        days, params = list(marks), marks_params(marks)
        overlaps = conn.execute(OVERLAPS, params).fetchall()
        missing = conn.execute(
            f"SELECT * FROM ({MISSING_EVENTS}) x WHERE x.found <> x.events LIMIT 20", params
        ).fetchall()
        reused = one(conn, REUSED_IDS, params)[0]
    return dg.AssetCheckResult(
        passed=not overlaps and not missing,
        metadata={
            "days": dg.MetadataValue.json([d.isoformat() for d in days]),
            "source_marks": marks_metadata(marks),
            "duplicate_sessions": len(overlaps),
            "duplicate_session_examples": dg.MetadataValue.json(
                [[r[0], r[1].isoformat(), r[2].isoformat()] for r in overlaps[:5]]
            ),
            "sessions_with_missing_events": len(missing),
            "missing_event_examples": dg.MetadataValue.json(
                [{"session_id": r[0], "start": r[1].isoformat(), "events": r[2], "found": r[3]}
                 for r in missing[:5]]
            ),
            "event_ids_reused_with_another_time": int(reused),
        },
    )
