"""Anomaly rules, run as SQL inside the micro-batch transaction.

Input: the temp table ``new_events`` (rows this batch really inserted into ``events``). Only the
sessions and minutes touched by those rows are re-evaluated, over the whole ``events`` table
(index ``(session_id, event_ts)``), so a window that spans several batches is judged on all of its
events. Results are upserted ON CONFLICT (anomaly_type, entity, window_start): observed values
grow as a window fills, ``detected_at`` keeps the first detection. Because this runs in the same
transaction as the insert and the ledger row, a replayed batch can neither add nor double count.

Rules (thresholds from settings):
- HIGH_FREQUENCY: > high_frequency_clicks clicks in one session, 10 s tumbling window;
  score = clicks / high_frequency_clicks.
- BOT_LIKE: > bot_like_clicks clicks in one session, 60 s window sliding every 30 s, and
  unique_items / clicks < bot_like_unique_ratio; score = clicks / bot_like_clicks × (1 − ratio).
- TRAFFIC_SPIKE: events per event-time minute, overall (entity 'all') and per category, against an
  EWMA mean/variance of the previous minutes (minute_counts); z > spike_z_threshold and count ≥
  spike_min_events; score = z. The deviation is floored at sqrt(spike_dispersion × mean) and
  spike_min_relative_std × mean. Warm-up: the rule stays silent until the baseline holds
  spike_min_history_minutes FULL minutes (see :func:`ewma_baseline`: empty minutes are gaps, not
  zeros; minutes next to a gap may be partial and are left out; earlier spikes are not learnt).
- ERROR_BURST: error events per minute ≥ error_burst_per_minute; score = errors / threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from clickguard.settings import Settings

UPSERT_TAIL = """
ON CONFLICT (anomaly_type, entity, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end,
    updated_at = EXCLUDED.updated_at,
    click_count = EXCLUDED.click_count,
    unique_items = EXCLUDED.unique_items,
    anomaly_score = EXCLUDED.anomaly_score,
    observed = EXCLUDED.observed,
    threshold = EXCLUDED.threshold,
    baseline = EXCLUDED.baseline,
    details = EXCLUDED.details
RETURNING (xmax = 0) AS inserted
"""

COLUMNS = """INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,
    detected_at, updated_at, click_count, unique_items, anomaly_score, observed, threshold,
    baseline, details)"""

HIGH_FREQUENCY_SQL = f"""{COLUMNS}
SELECT 'HIGH_FREQUENCY', 'session:' || w.session_id, w.session_id, w.ws,
       w.ws + interval '10 seconds', clock_timestamp(), clock_timestamp(), c.clicks, c.uniq,
       c.clicks::float8 / %(thr)s, c.clicks, %(thr)s, NULL,
       jsonb_build_object('rule', 'clicks in one session within a 10 s tumbling window > threshold',
                          'clicks', c.clicks, 'threshold', %(thr)s, 'window_seconds', 10)
FROM (SELECT DISTINCT session_id, date_bin('10 seconds', event_ts, timestamptz 'epoch') AS ws
      FROM new_events WHERE event_type = 'click') w
CROSS JOIN LATERAL (
    SELECT count(*) AS clicks, count(DISTINCT e.item_id) AS uniq FROM events e
    WHERE e.session_id = w.session_id AND e.event_ts >= w.ws
      AND e.event_ts < w.ws + interval '10 seconds' AND e.event_type = 'click') c
WHERE c.clicks > %(thr)s
{UPSERT_TAIL}"""

BOT_LIKE_SQL = f"""{COLUMNS}
SELECT 'BOT_LIKE', 'session:' || w.session_id, w.session_id, w.ws, w.ws + interval '60 seconds',
       clock_timestamp(), clock_timestamp(), c.clicks, c.uniq,
       (c.clicks::float8 / %(thr)s) * (1 - c.uniq::float8 / c.clicks), c.clicks, %(thr)s, NULL,
       jsonb_build_object('rule', 'clicks in a 60 s window sliding every 30 s > threshold and '
                                  'unique_items / clicks < max_unique_ratio',
                          'clicks', c.clicks, 'unique_items', c.uniq,
                          'unique_ratio', round((c.uniq::numeric / c.clicks), 4),
                          'threshold', %(thr)s, 'max_unique_ratio', %(ratio)s)
FROM (SELECT DISTINCT t.session_id, t.b - s.shift AS ws
      FROM (SELECT session_id, date_bin('30 seconds', event_ts, timestamptz 'epoch') AS b
            FROM new_events WHERE event_type = 'click') t
      CROSS JOIN (VALUES (interval '0 seconds'), (interval '30 seconds')) s(shift)) w
CROSS JOIN LATERAL (
    SELECT count(*) AS clicks, count(DISTINCT e.item_id) AS uniq FROM events e
    WHERE e.session_id = w.session_id AND e.event_ts >= w.ws
      AND e.event_ts < w.ws + interval '60 seconds' AND e.event_type = 'click') c
WHERE c.clicks > %(thr)s AND c.uniq::float8 / c.clicks < %(ratio)s
{UPSERT_TAIL}"""

ERROR_BURST_SQL = f"""{COLUMNS}
SELECT 'ERROR_BURST', 'all', NULL, m.minute, m.minute + interval '1 minute', clock_timestamp(),
       clock_timestamp(), m.events, 0, m.errors::float8 / %(thr)s, m.errors, %(thr)s, NULL,
       jsonb_build_object('rule', 'error events per minute >= threshold',
                          'errors', m.errors, 'events', m.events, 'threshold', %(thr)s)
FROM minute_counts m
WHERE m.scope = 'all' AND m.key = 'all' AND m.errors >= %(thr)s
  AND m.minute IN (SELECT DISTINCT date_trunc('minute', event_ts) FROM new_events
                   WHERE event_type = 'error')
{UPSERT_TAIL}"""

MINUTE_COUNTS_SQL = """
INSERT INTO minute_counts AS m (scope, key, minute, events, errors)
SELECT scope, key, minute, count(*), count(*) FILTER (WHERE event_type = 'error')
FROM (SELECT 'all' AS scope, 'all' AS key, date_trunc('minute', event_ts) AS minute, event_type
      FROM new_events
      UNION ALL
      SELECT 'category', category, date_trunc('minute', event_ts), event_type
      FROM new_events WHERE category IS NOT NULL) x
GROUP BY scope, key, minute
ON CONFLICT (scope, key, minute) DO UPDATE
SET events = m.events + EXCLUDED.events, errors = m.errors + EXCLUDED.errors
"""

SPIKE_CANDIDATES_SQL = """
WITH touched AS (
    SELECT DISTINCT 'all' AS scope, 'all' AS key, date_trunc('minute', event_ts) AS minute
    FROM new_events
    UNION
    SELECT DISTINCT 'category', category, date_trunc('minute', event_ts)
    FROM new_events WHERE category IS NOT NULL)
SELECT t.scope, t.key, t.minute, cur.events,
       coalesce(array_agg(h.minute ORDER BY h.minute) FILTER (WHERE h.minute IS NOT NULL), '{}'),
       coalesce(array_agg(h.events ORDER BY h.minute) FILTER (WHERE h.minute IS NOT NULL), '{}')
FROM touched t
JOIN minute_counts cur ON cur.scope = t.scope AND cur.key = t.key AND cur.minute = t.minute
LEFT JOIN minute_counts h ON h.scope = t.scope AND h.key = t.key
     AND h.minute >= t.minute - make_interval(mins => %(lookback)s + 1) AND h.minute < t.minute
WHERE cur.events >= %(min_events)s
GROUP BY t.scope, t.key, t.minute, cur.events
"""

SPIKE_UPSERT_SQL = f"""{COLUMNS}
VALUES ('TRAFFIC_SPIKE', %(entity)s, NULL, %(minute)s, %(minute)s + interval '1 minute',
        clock_timestamp(), clock_timestamp(), %(observed)s, 0, %(z)s, %(observed)s,
        %(z_thr)s, %(baseline)s, %(details)s)
{UPSERT_TAIL}"""

SPIKE_LOOKBACK_MINUTES = 30


@dataclass(frozen=True)
class Baseline:
    """EWMA mean and standard deviation of a per-minute series; ``minutes`` of history used."""

    mean: float
    std: float
    minutes: int


ONE_MINUTE = timedelta(minutes=1)


def _std(mean: float, var: float, min_relative_std: float, dispersion: float) -> float:
    return max(math.sqrt(var), math.sqrt(dispersion * max(mean, 1.0)), min_relative_std * mean)


def full_minutes(minute: datetime, history: list[tuple[datetime, int]]) -> list[datetime]:
    """The history minutes (before ``minute``) that are surely complete, oldest first.

    A minute with no events is a gap (an outage, a stopped producer), not a zero: a zero would
    drag the mean down and make the minute traffic resumes look like a spike. A minute next to a
    gap (the first one of the series, the last one before a gap, the first one after) may hold
    only part of a minute's traffic, so it is left out too. The minute just before ``minute``
    counts as complete: ``minute`` itself has events.
    """
    have = {m for m, c in history if c > 0 and m < minute}
    return sorted(
        m for m in have
        if m - ONE_MINUTE in have and (m + ONE_MINUTE in have or m + ONE_MINUTE == minute)
    )


def ewma_baseline(
    minute: datetime, history: list[tuple[datetime, int]], alpha: float,
    min_relative_std: float = 0.0, outlier_z: float | None = None, level_shift_minutes: int = 3,
    dispersion: float = 1.0,
) -> Baseline | None:
    """EWMA mean/variance over the full minutes of ``history`` before ``minute`` (None if none).

    The deviation has floors: sqrt(``dispersion`` × mean) (Poisson for 1; clicks come in
    sessions, so per-minute counts of a category vary several times more than Poisson ones: a
    small category's count would otherwise "spike" on steady traffic) and ``min_relative_std`` ×
    mean, so a perfectly steady history (a paced producer) does not turn a small relative wobble
    of a large count — 5 % more events overall — into a huge z-score. With ``outlier_z``, a minute
    above mean + outlier_z × std (an earlier spike) is not learnt, so one spike does not hide the
    next; ``level_shift_minutes`` such minutes in a row are a new level and restart the baseline.
    """
    counts = dict(history)
    usable = full_minutes(minute, history)
    if not usable:
        return None
    mean, var, n = float(counts[usable[0]]), 0.0, 1
    pending: list[float] = []  # consecutive outliers not learnt (yet)
    for m in usable[1:]:
        x = float(counts[m])
        limit = mean + (outlier_z or 0.0) * _std(mean, var, min_relative_std, dispersion)
        if outlier_z is not None and x > limit:
            pending.append(x)
            if len(pending) < level_shift_minutes:
                continue
            mean, var, n = pending[0], 0.0, 1  # the new normal: learn it from its start
            xs, pending = pending[1:], []
        else:
            xs, pending = [x], []  # isolated spikes stay unlearnt
        for v in xs:
            diff = v - mean
            incr = alpha * diff
            mean += incr
            var = (1 - alpha) * (var + diff * incr)
            n += 1
    return Baseline(mean, _std(mean, var, min_relative_std, dispersion), n)


def zscore(observed: float, base: Baseline) -> float:
    return (observed - base.mean) / base.std


def update_minute_counts(cur: psycopg.Cursor) -> None:
    """Add this batch's new events to the per-minute counts (same transaction)."""
    cur.execute(MINUTE_COUNTS_SQL)


def detect(cur: psycopg.Cursor, settings: Settings) -> dict[str, int]:
    """Run every rule for what ``new_events`` touched; returns NEW anomalies per type."""
    s = settings
    found: dict[str, int] = {}

    def run(name: str, query: str, params: dict[str, object]) -> None:
        cur.execute(query, params)
        found[name] = found.get(name, 0) + sum(1 for (ins,) in cur.fetchall() if ins)

    run("HIGH_FREQUENCY", HIGH_FREQUENCY_SQL, {"thr": s.high_frequency_clicks})
    run("BOT_LIKE", BOT_LIKE_SQL, {"thr": s.bot_like_clicks, "ratio": s.bot_like_unique_ratio})
    run("ERROR_BURST", ERROR_BURST_SQL, {"thr": s.error_burst_per_minute})
    cur.execute(
        SPIKE_CANDIDATES_SQL,
        {"lookback": SPIKE_LOOKBACK_MINUTES, "min_events": s.spike_min_events},
    )
    for scope, key, minute, observed, minutes, counts in cur.fetchall():
        base = ewma_baseline(
            minute, list(zip(minutes, counts, strict=True)), s.spike_ewma_alpha,
            s.spike_min_relative_std, outlier_z=s.spike_z_threshold,
            level_shift_minutes=s.spike_level_shift_minutes, dispersion=s.spike_dispersion,
        )
        if base is None or base.minutes < s.spike_min_history_minutes:
            continue
        z = zscore(observed, base)
        if z <= s.spike_z_threshold:
            continue
        details = {
            "rule": "events per minute vs EWMA baseline of previous minutes: z > threshold "
            "and events >= min_events",
            "scope": scope, "events": observed, "ewma_mean": round(base.mean, 3),
            "ewma_std": round(base.std, 3), "z": round(z, 3), "history_minutes": base.minutes,
            "alpha": s.spike_ewma_alpha, "z_threshold": s.spike_z_threshold,
            "min_relative_std": s.spike_min_relative_std, "dispersion": s.spike_dispersion,
            "min_events": s.spike_min_events,
        }
        run(
            "TRAFFIC_SPIKE",
            SPIKE_UPSERT_SQL,
            {
                "entity": "all" if scope == "all" else f"category:{key}",
                "minute": minute, "observed": observed, "z": z,
                "z_thr": s.spike_z_threshold, "baseline": base.mean, "details": Jsonb(details),
            },
        )
    return found
