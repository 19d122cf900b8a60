"""Precision and recall of the anomaly rules against the generator's ground truth.

A detection matches an injected anomaly when the type and the entity are the same and the
windows overlap (a sliding-window rule may legitimately report a neighbouring window of the same
burst). Precision = matching detections / detections; recall = injected anomalies with at least
one matching detection / injected anomalies. Entities: the anomalies table writes
``session:<id>``, ``category:<name>`` or ``all``; the ground truth ``<id>``, ``<name>``, ``all``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from clickguard.producer.generator import ANOMALY_TYPES, GroundTruth


@dataclass(frozen=True)
class Detection:
    type: str
    entity: str
    window_start: datetime
    window_end: datetime


@dataclass
class RuleScore:
    rule: str
    injected: int
    detected: int
    true_detections: int  # detections matching some injected anomaly
    found: int  # injected anomalies matched by at least one detection

    @property
    def precision(self) -> float | None:
        return self.true_detections / self.detected if self.detected else None

    @property
    def recall(self) -> float | None:
        return self.found / self.injected if self.injected else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall}


def bare_entity(entity: str) -> str:
    """``session:42`` → ``42``, ``category:books`` → ``books``, ``all`` → ``all``."""
    return entity.split(":", 1)[1] if ":" in entity else entity


def _matches(d: Detection, g: GroundTruth) -> bool:
    if d.type != g.type or bare_entity(d.entity) != g.entity:
        return False
    g_start, g_end = datetime.fromisoformat(g.window_start), datetime.fromisoformat(g.window_end)
    return d.window_start < g_end and g_start < d.window_end


def score(truths: list[GroundTruth], detections: list[Detection]) -> dict[str, RuleScore]:
    """Per rule (all four, even if absent from both lists)."""
    out: dict[str, RuleScore] = {}
    for rule in ANOMALY_TYPES:
        ts = [g for g in truths if g.type == rule]
        ds = [d for d in detections if d.type == rule]
        out[rule] = RuleScore(
            rule=rule,
            injected=len(ts),
            detected=len(ds),
            true_detections=sum(1 for d in ds if any(_matches(d, g) for g in ts)),
            found=sum(1 for g in ts if any(_matches(d, g) for d in ds)),
        )
    return out


def detections_between(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> list[Detection]:
    """Anomalies whose window starts in [start, end)."""
    rows = conn.execute(
        "SELECT anomaly_type, entity, window_start, window_end FROM anomalies "
        "WHERE window_start >= %s AND window_start < %s",
        (start, end),
    ).fetchall()
    return [Detection(*r) for r in rows]
