"""Precision/recall scoring of detections against ground truth (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickguard_producer.generator import GroundTruth
from clickguard_proof.evaluation import Detection, score

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


def test_below_threshold_blocks_false_alarms_and_delays() -> None:
    from dataclasses import replace

    above = replace(truth("ERROR_BURST", "all", T, 60), last_event_id="e1")
    below = replace(truth("ERROR_BURST", "all", T + timedelta(minutes=1), 60), above=False)
    missed = truth("ERROR_BURST", "all", T + timedelta(minutes=3), 60)
    dets = [
        Detection("ERROR_BURST", "all", T, T + timedelta(minutes=1),
                  detected_at=T + timedelta(minutes=1, seconds=5)),
        Detection("ERROR_BURST", "all", T + timedelta(minutes=1), T + timedelta(minutes=2)),
        Detection("ERROR_BURST", "all", T + timedelta(minutes=2), T + timedelta(minutes=3)),
    ]
    s = score([above, below, missed], dets,
              ingested={"e1": T + timedelta(minutes=1, seconds=2)}, steady_hours=0.5)
    r = s["ERROR_BURST"]
    assert (r.injected, r.injected_below, r.detected) == (2, 1, 3)
    assert (r.true_detections, r.found, r.below_detected, r.false_alarms) == (1, 1, 1, 1)
    assert r.precision == pytest.approx(1 / 3) and r.recall == 0.5
    assert r.false_alarms_per_hour == 2.0
    assert r.delays_s == [3.0] and r.delay_percentile(50) == r.delay_percentile(95) == 3.0
    assert s["HIGH_FREQUENCY"].false_alarms_per_hour == 0.0


def test_delay_percentiles_are_nearest_rank() -> None:
    from clickguard_proof.evaluation import RuleScore

    r = RuleScore("X", 20, 20, 20, 20, delays_s=[float(i) for i in range(1, 21)])
    assert (r.delay_percentile(50), r.delay_percentile(95)) == (10.0, 19.0)
