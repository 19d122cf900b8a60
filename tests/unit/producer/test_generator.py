"""The generator: funnels make sense, popularity is skewed, anomalies match their ground truth."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from clickguard.contract import validate
from clickguard_producer.generator import (
    ANOMALY_TYPES,
    Generator,
    GeneratorConfig,
    read_ground_truth,
)

T0 = 1_764_100_000.0  # a fixed instant (s): event times are reproducible


def fixed_clock(step_s: float = 0.001):
    """A deterministic clock advancing ``step_s`` per reading (events 1 ms apart)."""
    ticks = itertools.count()
    return lambda: T0 + next(ticks) * step_s


def make(n: int = 0, **cfg) -> tuple[Generator, list[dict]]:
    gen = Generator(GeneratorConfig(run_id="unit", **cfg), clock=fixed_clock())
    return gen, gen.take(n)


def by_session(events: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        out[e["session_id"]].append(e)
    return out


def test_same_seed_same_stream_and_ids_unique() -> None:
    _, a = make(3000, seed=5)
    _, b = make(3000, seed=5)
    _, c = make(3000, seed=6)
    assert a == b
    assert [e["event_type"] for e in a] != [e["event_type"] for e in c]
    assert len({e["event_id"] for e in a}) == 3000


def test_run_ids_keep_runs_apart() -> None:
    a = Generator(GeneratorConfig(seed=1)).take(50)
    b = Generator(GeneratorConfig(seed=1)).take(50)
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}
    assert not {e["session_id"] for e in a} & {e["session_id"] for e in b}
    assert all(0 < e["session_id"] < 2**53 for e in a + b)


def test_funnels_are_ordered_and_every_event_is_valid() -> None:
    _, events = make(20_000, seed=3)
    sessions = by_session(events)
    for evs in sessions.values():
        kinds = [e["event_type"] for e in evs if e["event_type"] != "error"]
        assert kinds[0] == "page_view"
        if "purchase" in kinds:
            assert "checkout" in kinds
            assert kinds.index("checkout") < kinds.index("purchase")
            assert "add_to_cart" in kinds
            assert kinds.index("add_to_cart") < kinds.index("checkout")
        if "checkout" in kinds:
            assert "add_to_cart" in kinds
        assert len(evs) <= 40
    for e in events:
        from datetime import UTC, datetime

        assert validate(e, now=datetime.fromtimestamp(T0 + 3600, UTC)) is None, e
        if e["event_type"] == "purchase":
            assert e["price"] > 0 and 1 <= e["quantity"] <= 3
        else:
            assert e["price"] is None and e["quantity"] is None
    counts = Counter(e["event_type"] for e in events)
    # a funnel narrows: views > clicks > carts > checkouts; purchases exist
    assert counts["page_view"] > counts["click"] > counts["add_to_cart"] > counts["checkout"]
    assert counts["purchase"] > 0 and counts["remove_from_cart"] > 0


def test_item_popularity_is_skewed() -> None:
    gen, events = make(30_000, seed=4)
    clicks = Counter(e["item_id"] for e in events if e["item_id"] is not None)
    top = sum(c for _, c in clicks.most_common(len(gen.catalog.items) // 100))
    # Zipf: the top 1 % of the catalogue draws far more than 1 % of the traffic
    assert top / sum(clicks.values()) > 0.2
    assert len({e["category"] for e in events if e["category"]}) >= 10


def _clicks_per_window(evs: list[dict], size_ms: int, slide_ms: int) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for e in evs:
        if e["event_type"] != "click":
            continue
        ts = e["event_ts"]
        start = (ts // slide_ms) * slide_ms
        while start > ts - size_ms:
            out[start].append(e)
            start -= slide_ms
    return out


def session_rule_hits(events: list[dict]) -> set[tuple[str, str, int]]:
    """A direct implementation of the two original session rules (the brief's definitions)."""
    hits: set[tuple[str, str, int]] = set()
    for sid, evs in by_session(events).items():
        for ws, cl in _clicks_per_window(evs, 10_000, 10_000).items():
            if len(cl) > 50:
                hits.add(("HIGH_FREQUENCY", str(sid), ws))
        for ws, cl in _clicks_per_window(evs, 60_000, 30_000).items():
            if len(cl) > 50 and len({e["item_id"] for e in cl}) / len(cl) < 0.1:
                hits.add(("BOT_LIKE", str(sid), ws))
    return hits


def test_session_anomalies_match_ground_truth_exactly() -> None:
    gen, events = make(12_000, seed=9, anomaly_every=1_000,
                       anomaly_types=("HIGH_FREQUENCY", "BOT_LIKE"))
    truth = {
        (g.type, g.entity, int(_ms(g.window_start))) for g in gen.ground_truth
    }
    assert len(truth) >= 8
    # every injected anomaly is found by the rule, and nothing else is (no false positives
    # from normal traffic, no BOT_LIKE from a HIGH_FREQUENCY session or vice versa)
    assert session_rule_hits(events) == truth
    tagged = Counter(e.get("_anomaly") for e in events)
    assert tagged["HIGH_FREQUENCY"] + tagged["BOT_LIKE"] == 60 * len(truth)


def test_anomalies_are_in_the_recent_past() -> None:
    gen, _ = make(0)
    for kind in ANOMALY_TYPES:
        now = gen.now_ms()
        block = gen.inject(kind)
        assert all(now - 180_000 < e["event_ts"] <= now for e in block), kind
        g = gen.ground_truth[-1]
        assert g.type == kind
        assert all(_ms(g.window_start) <= e["event_ts"] < _ms(g.window_end) for e in block)


def test_minute_anomalies() -> None:
    gen, _ = make(0, spike_events=500, error_burst_events=150)
    spike = gen.inject("TRAFFIC_SPIKE")
    assert len(spike) == 500
    assert {e["category"] for e in spike} == {gen.ground_truth[-1].entity}
    assert max(Counter(e["session_id"] for e in spike).values()) <= 10
    second = gen.inject("TRAFFIC_SPIKE")  # the next spike hits another quiet category
    assert {e["category"] for e in second} == {gen.catalog.quiet_categories[1]}
    assert gen.ground_truth[-2].entity == gen.catalog.quiet_categories[0]
    burst = gen.inject("ERROR_BURST")
    g = gen.ground_truth[-1]
    assert (g.type, g.entity, g.events) == ("ERROR_BURST", "all", 150)
    assert {e["event_type"] for e in burst} == {"error"}
    assert len({e["event_ts"] // 60_000 for e in burst}) == 1
    # a second burst in the same minute is the same anomaly: the row grows, none is added
    gen.inject("ERROR_BURST")
    assert (len(gen.ground_truth), gen.ground_truth[-1].events) == (3, 300)


def test_limit_is_exact_and_blocks_are_never_cut(tmp_path: Path) -> None:
    gen, events = make(1_030, anomaly_every=1_000, anomaly_types=("HIGH_FREQUENCY",))
    assert len(events) == 1_030
    # the block (60 events) did not fit into the last 30: not started, no ground truth
    assert gen.ground_truth == []
    gen, events = make(1_060, anomaly_every=1_000, anomaly_types=("HIGH_FREQUENCY",))
    assert len(events) == 1_060 and len(gen.ground_truth) == 1
    assert gen.write_ground_truth(tmp_path / "gt.jsonl") == 1
    assert read_ground_truth(tmp_path / "gt.jsonl") == gen.ground_truth


def test_time_offset_shifts_event_time() -> None:
    a = Generator(GeneratorConfig(run_id="x"), clock=lambda: T0).take(1)[0]
    b = Generator(GeneratorConfig(run_id="x", time_offset_s=-3600), clock=lambda: T0).take(1)[0]
    assert a["event_ts"] - b["event_ts"] == 3_600_000


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_blocks_sorted_by_time(kind: str) -> None:
    gen, _ = make(0, spike_events=200, error_burst_events=120)
    ts = [e["event_ts"] for e in gen.inject(kind)]
    assert ts == sorted(ts)


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# --- sized injections around the rules' thresholds (issue 9) ----------------------------------
def minute_clock(rate: float):
    """A clock at ``rate`` readings/s from a minute boundary (events at that rate)."""
    ticks = itertools.count()
    start = (T0 // 60 + 1) * 60
    return lambda: start + next(ticks) / rate


def test_session_blocks_sized_at_the_threshold() -> None:
    gen = Generator(GeneratorConfig(run_id="sz"), clock=fixed_clock())
    gen.take(100)
    hf_at = gen.inject("HIGH_FREQUENCY", size=50)
    hf_over = gen.inject("HIGH_FREQUENCY", size=51)
    bot_over = gen.inject("BOT_LIKE", size=53, distinct=3)
    bot_diverse = gen.inject("BOT_LIKE", size=56, distinct=6)  # ratio 0.107: not bot-like
    assert [len(b) for b in (hf_at, hf_over, bot_over, bot_diverse)] == [50, 51, 53, 56]
    assert len({e["item_id"] for e in bot_over}) == 3
    truths = gen.ground_truth
    assert [(g.size, g.threshold, g.above) for g in truths] == [
        (50, 51, False), (51, 51, True), (53, 51, True), (56, 51, False)]
    assert [g.last_event_id for g in truths] == [
        b[-1]["event_id"] for b in (hf_at, hf_over, bot_over, bot_diverse)]
    spike_cats = set(gen.catalog.spike_categories)
    assert not {e["category"] for b in (hf_at, hf_over, bot_over) for e in b} & spike_cats


def test_error_burst_tops_up_the_minute_s_background_errors() -> None:
    gen = Generator(GeneratorConfig(run_id="eb", error_rate=0.01), clock=minute_clock(100))
    normal = gen.take(6_100)  # 61 s: minute 0 is complete
    minute0 = normal[0]["event_ts"] // 60_000
    background = sum(1 for e in normal
                     if e["event_type"] == "error" and e["event_ts"] // 60_000 == minute0)
    assert background > 20
    block = gen.inject("ERROR_BURST", size=99)
    assert len(block) == 99 - background
    assert {e["event_ts"] // 60_000 for e in block} == {minute0}
    g = gen.ground_truth[-1]
    assert (g.size, g.threshold, g.above) == (99, 100, False)


def test_spike_level_is_relative_to_the_category_s_own_minutes() -> None:
    gen = Generator(GeneratorConfig(run_id="sp"), clock=minute_clock(200))
    normal = gen.take(200 * 60 * 7 + 100)  # seven full minutes
    last = normal[-1]["event_ts"] // 60_000 * 60_000 - 60_000
    cat = gen.catalog.spike_categories[0]
    per_minute = Counter(e["event_ts"] // 60_000 * 60_000 for e in normal if e["category"] == cat)
    mean = sum(per_minute[last - i * 60_000] for i in range(1, 6)) / 5
    threshold = gen.spike_threshold(cat, last)
    assert threshold == pytest.approx(max(100, mean + 4 * max((4 * mean) ** 0.5, 0.1 * mean)))
    block = gen.inject("TRAFFIC_SPIKE", level=1.1)
    g = gen.ground_truth[-1]
    assert g.entity == cat and g.above and g.size == math.ceil(1.1 * threshold)
    assert per_minute[last] + len(block) == g.size  # the minute's total is the size
    gen.inject("TRAFFIC_SPIKE", level=0.9)
    assert not gen.ground_truth[-1].above
    assert gen.ground_truth[-1].entity == gen.catalog.spike_categories[1]
