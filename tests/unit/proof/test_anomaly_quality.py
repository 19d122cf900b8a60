"""The quality bench's injection plan: enough blocks per rule, half of them below the threshold."""

from __future__ import annotations

import itertools
from collections import Counter

from clickguard.settings import Settings
from clickguard_producer.generator import ANOMALY_TYPES, Generator
from clickguard_proof.anomaly_quality import blocks_for_minute, generator_config

RATE = 50


def test_thirty_minutes_give_thirty_blocks_per_rule_on_both_sides() -> None:
    s = Settings()
    ticks = itertools.count()
    gen = Generator(generator_config(s, seed=2, rate=RATE),
                    clock=lambda: 1_764_000_000 + next(ticks) / RATE)
    for i in range(35):
        gen.take(RATE * 60)
        if i >= 5:  # five plain minutes first, as the bench does
            list(blocks_for_minute(gen, s, i - 5, per_minute=2))
    truths = gen.ground_truth
    sides = Counter((g.type, g.above) for g in truths)
    for rule in ANOMALY_TYPES:
        assert sides[(rule, True)] >= 15 and sides[(rule, False)] >= 15, sides
        assert sides[(rule, True)] + sides[(rule, False)] >= 30
    for g in truths:  # "just": within a few clicks / 10 % of errors / 25 % of the spike count
        assert g.size is not None and g.threshold is not None
        assert abs(g.size / g.threshold - 1) <= 0.26, g
        if g.type == "HIGH_FREQUENCY":
            assert g.above == (g.size > s.high_frequency_clicks)
        if g.type == "ERROR_BURST":
            assert g.above == (g.size >= s.error_burst_per_minute)
    # no two blocks merged into one truth (same rule, entity and window): 30 x (2 + 2 + 2 + 1)
    assert len(truths) == 210
