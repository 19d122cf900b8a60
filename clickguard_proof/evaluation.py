"""Detection quality of the anomaly rules against the generator's ground truth.

A detection matches an injection when the type and the entity are the same and the windows
overlap (a sliding-window rule may legitimately report a neighbouring window of the same burst).
Injections are labelled ``above`` (must fire) or not (a block just below the threshold: must NOT
fire). Per rule:

- precision = detections matching an above-threshold injection / detections;
- recall = above-threshold injections with at least one matching detection / above injections;
- below_detected = below-threshold injections that were flagged (each one a false positive);
- false alarms = detections matching no injection at all (steady traffic flagged), also per hour
  of steady traffic;
- detection delay = first matching ``detected_at`` − ingest time of the injection's last event.

Entities: the anomalies table writes ``session:<id>``, ``category:<name>`` or ``all``; the ground
truth ``<id>``, ``<name>``, ``all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from clickguard_producer.generator import ANOMALY_TYPES, GroundTruth


@dataclass(frozen=True)
class Detection:
    type: str
    entity: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime | None = None


@dataclass
class RuleScore:
    rule: str
    injected: int  # above-threshold injections (must fire)
    detected: int
    true_detections: int  # detections matching some above-threshold injection
    found: int  # above-threshold injections matched by at least one detection
    injected_below: int = 0  # below-threshold injections (must not fire)
    below_detected: int = 0  # of those, flagged anyway
    false_alarms: int = 0  # detections matching no injection at all
    steady_hours: float | None = None  # event-time hours of traffic scored
    delays_s: list[float] = field(default_factory=list)  # per found injection

    @property
    def precision(self) -> float | None:
        return self.true_detections / self.detected if self.detected else None

    @property
    def recall(self) -> float | None:
        return self.found / self.injected if self.injected else None

    @property
    def false_alarms_per_hour(self) -> float | None:
        return self.false_alarms / self.steady_hours if self.steady_hours else None

    def delay_percentile(self, q: float) -> float | None:
        """Nearest-rank percentile ``q`` (0-100) of the detection delays, in seconds."""
        if not self.delays_s:
            return None
        xs = sorted(self.delays_s)
        rank = max(1, -(-len(xs) * q // 100))  # ceil(n q / 100), at least the first
        return xs[int(rank) - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "injected_above": self.injected,
            "injected_below": self.injected_below, "detected": self.detected,
            "true_detections": self.true_detections, "found": self.found,
            "below_detected": self.below_detected, "false_alarms": self.false_alarms,
            "steady_hours": self.steady_hours, "precision": self.precision,
            "recall": self.recall, "false_alarms_per_hour": self.false_alarms_per_hour,
            "delay_p50_s": self.delay_percentile(50), "delay_p95_s": self.delay_percentile(95),
            "delays_s": [round(d, 3) for d in self.delays_s],
        }


def bare_entity(entity: str) -> str:
    """``session:42`` → ``42``, ``category:books`` → ``books``, ``all`` → ``all``."""
    return entity.split(":", 1)[1] if ":" in entity else entity


def _matches(d: Detection, g: GroundTruth) -> bool:
    if d.type != g.type or bare_entity(d.entity) != g.entity:
        return False
    g_start, g_end = datetime.fromisoformat(g.window_start), datetime.fromisoformat(g.window_end)
    return d.window_start < g_end and g_start < d.window_end


def score(
    truths: list[GroundTruth], detections: list[Detection],
    ingested: dict[str, datetime] | None = None, steady_hours: float | None = None,
) -> dict[str, RuleScore]:
    """Per rule (all four, even if absent from both lists).

    ``ingested`` maps an injection's ``last_event_id`` to that event's ingest time (delays are
    computed where both it and the detection's ``detected_at`` are known).
    """
    out: dict[str, RuleScore] = {}
    for rule in ANOMALY_TYPES:
        above = [g for g in truths if g.type == rule and g.above]
        below = [g for g in truths if g.type == rule and not g.above]
        ds = [d for d in detections if d.type == rule]
        delays: list[float] = []
        found = 0
        for g in above:
            hits = [d for d in ds if _matches(d, g)]
            if not hits:
                continue
            found += 1
            seen = [d.detected_at for d in hits if d.detected_at is not None]
            t_in = (ingested or {}).get(g.last_event_id or "")
            if seen and t_in is not None:
                delays.append((min(seen) - t_in).total_seconds())
        out[rule] = RuleScore(
            rule=rule,
            injected=len(above),
            detected=len(ds),
            true_detections=sum(1 for d in ds if any(_matches(d, g) for g in above)),
            found=found,
            injected_below=len(below),
            below_detected=sum(1 for g in below if any(_matches(d, g) for d in ds)),
            false_alarms=sum(1 for d in ds if not any(_matches(d, g) for g in above + below)),
            steady_hours=steady_hours,
            delays_s=delays,
        )
    return out


def detections_between(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> list[Detection]:
    """Anomalies whose window starts in [start, end)."""
    rows = conn.execute(
        "SELECT anomaly_type, entity, window_start, window_end, detected_at FROM anomalies "
        "WHERE window_start >= %s AND window_start < %s",
        (start, end),
    ).fetchall()
    return [Detection(*r) for r in rows]


def ingest_times(conn: psycopg.Connection, event_ids: list[str]) -> dict[str, datetime]:
    """``ingest_ts`` of stored events by id (the injections' last events)."""
    rows = conn.execute(
        "SELECT event_id, ingest_ts FROM events WHERE event_id = ANY(%s)", (event_ids,)
    ).fetchall()
    return dict(rows)
