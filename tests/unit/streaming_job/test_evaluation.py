"""Precision/recall scoring of detections against ground truth (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickguard.producer.generator import GroundTruth
from streaming_job.evaluation import Detection, score

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def truth(kind: str, entity: str, start: datetime, seconds: int) -> GroundTruth:
    end = start + timedelta(seconds=seconds)
    return GroundTruth(kind, entity, start.isoformat(), end.isoformat(), 60)


def det(kind: str, entity: str, start: datetime, seconds: int) -> Detection:
    return Detection(kind, entity, start, start + timedelta(seconds=seconds))


def test_overlap_type_and_entity_decide() -> None:
    truths = [
        truth("HIGH_FREQUENCY", "42", T, 10),
        truth("BOT_LIKE", "43", T, 60),
        truth("TRAFFIC_SPIKE", "books", T, 60),
        truth("ERROR_BURST", "all", T, 60),
    ]
    dets = [
        det("HIGH_FREQUENCY", "session:42", T, 10),  # hit
        det("HIGH_FREQUENCY", "session:42", T + timedelta(seconds=10), 10),  # next window: miss
        det("BOT_LIKE", "session:43", T + timedelta(seconds=30), 60),  # overlapping slide: hit
        det("TRAFFIC_SPIKE", "all", T, 60),  # wrong entity: false positive
        # ERROR_BURST not detected: recall 0
    ]
    s = score(truths, dets)
    assert (s["HIGH_FREQUENCY"].precision, s["HIGH_FREQUENCY"].recall) == (0.5, 1.0)
    assert (s["BOT_LIKE"].precision, s["BOT_LIKE"].recall) == (1.0, 1.0)
    assert (s["TRAFFIC_SPIKE"].precision, s["TRAFFIC_SPIKE"].recall) == (0.0, 0.0)
    assert (s["ERROR_BURST"].precision, s["ERROR_BURST"].recall) == (None, 0.0)
