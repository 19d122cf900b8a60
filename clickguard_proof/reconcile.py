"""RPO by reconciliation: the producer's acknowledged ledger against what the database holds.

The producer (``clickguard_producer.core.produce(..., ledger=PATH)``) writes one TSV line per
ACKNOWLEDGED record: ``event_id  kind  partition  offset``. Each acknowledged record must end
where its kind says (``clickguard_producer.faults``):

- ``valid``: its event_id is in ``events`` exactly once — else it is **lost**;
- ``duplicate``: its event_id is in ``events`` (dedup kept one copy);
- ``late``: a ``late_events`` row at its (topic, partition, offset);
- ``malformed:*``: a ``dlq_events`` row at its (topic, partition, offset).

**duplicated** counts stored copies beyond one per acknowledged id (PostgreSQL's primary key makes
this 0 unless the schema is broken — it is checked, not assumed) plus acknowledged ``valid``
records whose id Kafka holds at more than one offset (a producer retry that idempotence should
have prevented). **extra** counts rows of this run (event ids ``<run_id>-*``) that were never
acknowledged. The ledger is loaded with COPY into a temporary table and compared in SQL, so a run
of millions of events reconciles in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from clickguard.settings import Settings

LOAD = """
CREATE TEMP TABLE acked (event_id text, kind text, part integer, off bigint) ON COMMIT DROP
"""
QUERIES = {
    "acked_valid_ids": "SELECT count(DISTINCT event_id) FROM acked WHERE kind = 'valid'",
    "stored": """
        SELECT count(*) FROM events e
        WHERE e.event_id IN (SELECT event_id FROM acked WHERE kind = 'valid')""",
    "lost": """
        SELECT count(*) FROM (SELECT DISTINCT event_id FROM acked WHERE kind = 'valid') a
        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = a.event_id)""",
    "stored_copies_beyond_one": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM events e
            WHERE e.event_id IN (SELECT event_id FROM acked WHERE kind = 'valid')
            GROUP BY e.event_id HAVING count(*) > 1) d""",
    "kafka_duplicates": """
        SELECT coalesce(sum(n - 1), 0) FROM (
            SELECT count(*) AS n FROM acked WHERE kind = 'valid'
            GROUP BY event_id HAVING count(*) > 1) d""",
    "stored_from_other_offset": """
        SELECT count(*) FROM events e JOIN acked a
          ON a.kind = 'valid' AND a.event_id = e.event_id
        WHERE (e.kafka_partition, e.kafka_offset) <> (a.part, a.off)""",
    "duplicates_not_stored": """
        SELECT count(*) FROM acked a WHERE a.kind = 'duplicate'
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = a.event_id)""",
    "late_missing": """
        SELECT count(*) FROM acked a WHERE a.kind = 'late' AND NOT EXISTS (
            SELECT 1 FROM late_events l WHERE l.source_topic = %(topic)s
              AND l.source_partition = a.part AND l.source_offset = a.off)""",
    "dlq_missing": """
        SELECT count(*) FROM acked a WHERE a.kind LIKE 'malformed:%%' AND NOT EXISTS (
            SELECT 1 FROM dlq_events d WHERE d.source_topic = %(topic)s
              AND d.source_partition = a.part AND d.source_offset = a.off)""",
    "extra": """
        SELECT count(*) FROM events e
        WHERE e.event_id LIKE %(prefix)s
          AND NOT EXISTS (SELECT 1 FROM acked a WHERE a.event_id = e.event_id)""",
}


@dataclass
class Reconciliation:
    """Outcome of one ledger-vs-database comparison; ``ok`` when nothing is lost or doubled."""

    acked: int
    acked_by_kind: dict[str, int]
    acked_valid_ids: int
    stored: int
    lost: int
    duplicated: int
    extra: int
    details: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        misrouted = sum(
            self.details.get(k, 0)
            for k in ("late_missing", "dlq_missing", "duplicates_not_stored")
        )
        return self.lost == 0 and self.duplicated == 0 and self.extra == 0 and misrouted == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def read_ledger(path: Path) -> list[tuple[str | None, str, int, int]]:
    """(event_id or None, kind, partition, offset) per acknowledged record."""
    out: list[tuple[str | None, str, int, int]] = []
    for line in path.read_text().splitlines():
        if not line:
            continue
        eid, kind, part, off = line.split("\t")
        out.append((None if eid == "-" else eid, kind, int(part), int(off)))
    return out


def ledger_last_offsets(path: Path) -> dict[int, int]:
    """Highest acknowledged offset per partition: what the stream must commit before comparing."""
    last: dict[int, int] = {}
    with path.open() as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                p, o = int(parts[2]), int(parts[3])
                if o > last.get(p, -1):
                    last[p] = o
    return last


def reconcile(
    conn: psycopg.Connection, settings: Settings, ledger: Path, run_id: str | None = None
) -> Reconciliation:
    """Compare the acknowledged ``ledger`` with the database (call after the stream caught up).

    ``run_id`` (the generator's event-id prefix) enables the ``extra`` check.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(LOAD)
        # the producer writes "-" for records without a readable id: that is NULL here
        copy = "COPY acked (event_id, kind, part, off) FROM STDIN WITH (NULL '-')"
        with cur.copy(copy) as cp, ledger.open("rb") as f:
            while chunk := f.read(1 << 20):
                cp.write(chunk)
        cur.execute("ANALYZE acked")
        cur.execute("CREATE INDEX ON acked (event_id)")
        by_kind: dict[str, int] = dict(
            cur.execute("SELECT kind, count(*) FROM acked GROUP BY kind").fetchall()
        )
        params = {
            "topic": settings.topic_raw,
            "prefix": f"{run_id}-%" if run_id else "\x00never",
        }
        got: dict[str, int] = {}
        for name, sql in QUERIES.items():
            row = cur.execute(sql, params).fetchone()
            got[name] = int(row[0]) if row and row[0] is not None else 0
    duplicated = got["stored_copies_beyond_one"] + got["kafka_duplicates"]
    return Reconciliation(
        acked=sum(by_kind.values()),
        acked_by_kind={k: int(v) for k, v in by_kind.items()},
        acked_valid_ids=got["acked_valid_ids"],
        stored=got["stored"],
        lost=got["lost"],
        duplicated=duplicated,
        extra=got["extra"] if run_id else 0,
        details={k: got[k] for k in (
            "stored_copies_beyond_one", "kafka_duplicates", "stored_from_other_offset",
            "duplicates_not_stored", "late_missing", "dlq_missing",
        )},
    )
