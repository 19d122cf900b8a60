"""The batch ledger's readings: consumed offsets, consumer lag, events/s and freshness.

``batch_ledger`` holds one row per committed micro-batch, written by the streaming sink in the
same transaction as the batch's data. This module is the one owner of what those rows mean:

- **offsets format** — ``batch_ledger.offsets`` is ``{"<partition>": [first, last]}``: the
  first and last Kafka offset of the raw-topic rows of that batch (``{}`` for an empty batch).
  :func:`encode_offsets` writes it (the sink), :func:`next_offsets` reads one row.
- **consumer position** — per partition, the next offset to read = max(last) + 1 over the
  newest :data:`POSITION_BATCHES` ledger rows that carry offsets (or over every row of one
  streaming query: a bench's own query). Rows of another shape are not stream progress and are
  skipped. A partition none of those rows mentions is at position 0 (with traffic, every
  partition of the raw topic appears within a thousand batches).
- **consumer lag** — Kafka's end offset of the raw topic minus the position, ≥ 0, per partition;
  the total is their sum. Lag only falls when rows are committed to PostgreSQL (not when Spark
  reads them), because the position comes from the ledger, not from Spark's checkpoint.
- **events/s** — input rows of the batches committed in the last ``window_s`` seconds (every
  consumed record counts: stored, DLQ, late or duplicate), divided by the time they span: the
  window, or while the ledger's first batch with rows is younger than that, the time since it
  started (at least :data:`RATE_MIN_SPAN_S`; the streaming query's own first batch, empty,
  comes with the stack, a while before any traffic) — over a full minute a new stream's first
  readings were 66, 152 … 959 events/s while 1,000/s flowed.
- **freshness** — seconds since the newest sign of progress: a committed batch or a stored event.

The async API runs the SQL constants on its own pool and hands the rows to the pure functions;
everything else calls the ``conn`` functions. Same rules everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

POSITION_BATCHES = 1000  # newest batches with offsets that the stream's position is read from
# next offset per partition over the newest POSITION_BATCHES ledger rows that carry offsets, in
# the sink's format (see the module doc): an index range on committed_at, so the cost does not
# grow with the ledger (every ledger row: 5-7 s at 300 k rows, a week of 2 s batches)
COMMITTED_SQL = f"""
SELECT key::int AS partition, max((value->>1)::bigint) + 1 AS next_offset
FROM (SELECT offsets FROM batch_ledger
      WHERE jsonb_typeof(offsets) = 'object' AND offsets <> '{{}}'::jsonb
      ORDER BY committed_at DESC LIMIT {POSITION_BATCHES}) AS recent, jsonb_each(recent.offsets)
WHERE key ~ '^[0-9]+$' AND jsonb_typeof(value) = 'array'
GROUP BY key
"""
COMMITTED_BY_QUERY_SQL = """
SELECT key::int AS partition, max((value->>1)::bigint) + 1 AS next_offset
FROM batch_ledger, jsonb_each(offsets)
WHERE query_id = %(query_id)s
  AND jsonb_typeof(offsets) = 'object' AND key ~ '^[0-9]+$' AND jsonb_typeof(value) = 'array'
GROUP BY key
"""
RATE_WINDOW_S = 60
RATE_MIN_SPAN_S = 5  # a new ledger's rate is not read over a fraction of a batch cycle
# the ledger's first batch with rows, by the committed_at index: only a query's first batch is
# empty (Spark runs no batch without input), so the scan stops within a few rows
RATE_SQL = f"""
SELECT coalesce(sum(input_rows), 0) AS input_rows, count(*) AS batches,
       least(%(window_s)s::float8, greatest({RATE_MIN_SPAN_S}::float8, extract(epoch FROM now() - (
           SELECT started_at FROM batch_ledger WHERE input_rows > 0
           ORDER BY committed_at LIMIT 1))::float8)) AS span_s
FROM batch_ledger WHERE committed_at >= now() - make_interval(secs => %(window_s)s)
"""
FRESHNESS_SQL = """
SELECT b.at AS last_batch_at, e.at AS last_event_at,
       extract(epoch FROM now() - GREATEST(b.at, e.at))::float8 AS age_s
FROM (SELECT max(committed_at) AS at FROM batch_ledger) b,
     (SELECT max(commit_ts) AS at FROM events) e
"""


def encode_offsets(ranges: Iterable[tuple[int, int, int]]) -> dict[str, list[int]]:
    """``batch_ledger.offsets`` of one batch from its (partition, first, last) ranges."""
    return {str(int(p)): [int(lo), int(hi)] for p, lo, hi in ranges}


def next_offsets(value: Any) -> dict[int, int]:
    """Per partition, the next offset to read after one ledger row's ``offsets`` (a dict or its
    JSON text). Anything not in the sink's format reads as no progress (``{}``)."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    out: dict[int, int] = {}
    for p, rng in value.items():
        if (
            str(p).isdigit() and isinstance(rng, list) and len(rng) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in rng)
        ):
            out[int(p)] = rng[1] + 1
    return out


def merge_positions(values: Iterable[Any]) -> dict[int, int]:
    """The consumer position from several ledger ``offsets`` values: max per partition."""
    merged: dict[int, int] = {}
    for value in values:
        for p, nxt in next_offsets(value).items():
            merged[p] = max(merged.get(p, 0), nxt)
    return merged


def positions_from_rows(rows: Iterable[Any]) -> dict[int, int]:
    """The result rows of :data:`COMMITTED_SQL` (tuples or dict rows) as {partition: next}."""
    out: dict[int, int] = {}
    for row in rows:
        p, nxt = (row["partition"], row["next_offset"]) if isinstance(row, Mapping) else row
        out[int(p)] = int(nxt)
    return out


def committed_offsets(conn: psycopg.Connection[Any], query_id: str | None = None) -> dict[int, int]:
    """Next offset to read per raw-topic partition as committed in the ledger (its newest
    batches, or every batch of ``query_id``: a stream on a fresh checkpoint re-reads what others
    committed)."""
    if query_id is None:
        return positions_from_rows(conn.execute(COMMITTED_SQL).fetchall())
    return positions_from_rows(
        conn.execute(COMMITTED_BY_QUERY_SQL, {"query_id": query_id}).fetchall()
    )


def lag_by_partition(end: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, int]:
    """Records in Kafka not yet committed to the database, per partition (≥ 0)."""
    return {int(p): max(0, high - committed.get(int(p), 0)) for p, high in sorted(end.items())}


def total_lag(end: Mapping[int, int], committed: Mapping[int, int]) -> int:
    """Records in Kafka not yet committed to the database, over all partitions."""
    return sum(lag_by_partition(end, committed).values())


def rate_from(row: Mapping[str, Any] | Sequence[Any] | None) -> float:
    """Events/s from a :data:`RATE_SQL` row (a dict or tuple row; ``None`` reads 0)."""
    if row is None:
        return 0.0
    rows, span = (row["input_rows"], row["span_s"]) if isinstance(row, Mapping) else (
        row[0], row[2])
    return float(rows or 0) / float(span or RATE_WINDOW_S)


def events_per_second(conn: psycopg.Connection[Any], window_s: float = RATE_WINDOW_S) -> float:
    """Input rows of the batches committed in the last ``window_s`` seconds, per second of the
    time they span (see the module doc)."""
    return rate_from(conn.execute(RATE_SQL, {"window_s": window_s}).fetchone())


@dataclass(frozen=True)
class Freshness:
    """The newest committed batch, the newest stored event and the age of the newer of them."""

    last_batch_at: datetime | None
    last_event_at: datetime | None
    age_s: float | None  # None: no batch and no event ever

    def fresh(self, max_age_s: float) -> bool:
        return self.age_s is not None and self.age_s <= max_age_s


def freshness_from(row: Any) -> Freshness:
    """A :data:`FRESHNESS_SQL` row (tuple or dict row) as :class:`Freshness`."""
    if row is None:
        return Freshness(None, None, None)
    if isinstance(row, Mapping):
        row = (row["last_batch_at"], row["last_event_at"], row["age_s"])
    batch, event, age = row
    return Freshness(batch, event, float(age) if age is not None else None)


def freshness(conn: psycopg.Connection[Any]) -> Freshness:
    """Seconds since the stream last committed a batch or stored an event."""
    return freshness_from(conn.execute(FRESHNESS_SQL).fetchone())
