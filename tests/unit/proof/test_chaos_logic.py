"""Pure parts of chaos, capacity and demo: RTO from lag, lag growth, configs (no services)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clickguard.ledger import total_lag
from clickguard.settings import Settings
from clickguard_proof.chaos import (
    RANDOM,
    RANDOM_DOWN_S,
    RANDOM_GAP_S,
    RANDOM_KINDS,
    RANDOM_PAUSE_S,
    SCENARIOS,
    ChaosConfig,
    needed_nodes,
    random_plan,
    rto_lag,
)
from clickguard_proof.stream import Sample

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _samples(pairs: list[tuple[float, int | None]]) -> list[Sample]:
    return [Sample(t, NOW, lag, None) for t, lag in pairs]


def test_rto_lag_is_first_normal_sample_after_last_abnormal_one() -> None:
    s = _samples([(0, 10), (5, 10), (10, 50), (11, None), (12, 900), (13, 20), (14, 500),
                   (15, 30), (16, 10)])
    # fault at t=10; abnormal = lag > 100 or unreadable; last abnormal at t=14 -> 15 - 10
    assert rto_lag(s, 10.0, 100) == 5.0


def test_rto_lag_zero_when_never_abnormal_and_none_when_never_recovered() -> None:
    assert rto_lag(_samples([(0, 500), (10, 5), (11, 7)]), 10.0, 100) == 0.0
    assert rto_lag(_samples([(10, 5), (11, None), (12, 400)]), 10.0, 100) is None


def test_rto_lag_of_one_fault_among_several_stops_at_the_next_fault() -> None:
    s = _samples([(10, 500), (11, 50), (20, 900), (21, 900), (22, 40)])
    assert rto_lag(s, 10.0, 100, until=20.0) == 1.0  # normal again before fault 2 at t=20
    assert rto_lag(s, 10.0, 100) == 12.0  # over the whole run: fault 2's recovery counted too
    assert rto_lag(s, 20.0, 100) == 2.0
    assert rto_lag(_samples([(10, 500), (11, 500), (20, 5)]), 10.0, 100, until=20.0) is None
    # broker-and-driver: the driver's kill 0.2 s after the broker's, no sample between them
    assert rto_lag(s, 10.5, 100, until=10.7) is None


def test_random_gets_a_report_row_per_fault_with_its_own_rtos() -> None:
    from clickguard_proof.chaos import ScenarioResult, chaos_report

    r = ScenarioResult(RANDOM, reconciliation={"ok": True}, rto_first_event_s=0.3, rto_lag_s=86.8,
                       faults=[{"t": 24.1, "at": NOW.isoformat(), "what": "#1/2 registry: SIGKILL",
                                "rto_first_commit_s": 0.3, "rto_lag_normal_s": 4.0},
                               {"t": 86.8, "at": NOW.isoformat(), "what": "#2/2 postgres: stop",
                                "rto_first_commit_s": 9.5, "rto_lag_normal_s": None}])
    rows = chaos_report("c", [r], ChaosConfig.from_settings(Settings())).rows
    assert [(x["scenario"], x["RTO first commit s"], x["RTO lag normal s"]) for x in rows] == [
        (RANDOM, 0.3, 86.8), (f"{RANDOM} fault 1", 0.3, 4.0), (f"{RANDOM} fault 2", 9.5, None)]
    assert rows[2]["target"] == "t = 86.8 s: #2/2 postgres: stop"
    assert rows[1].keys() == rows[0].keys()


def test_lag_counts_uncommitted_records_per_partition() -> None:
    # partition 2 never committed: all of it is lag; committed beyond the end counts as 0
    assert total_lag({0: 100, 1: 50, 2: 7}, {0: 90, 1: 60}) == 10 + 0 + 7


def test_short_config_is_lighter_than_full() -> None:
    full = ChaosConfig.from_settings(Settings())
    short = full.short()
    assert short.rate <= 500 and short.warmup_s < full.warmup_s and short.bounces == 2
    assert short.recover_timeout_s == full.recover_timeout_s


def test_every_scenario_needs_the_stream_and_api_only_for_api() -> None:
    assert len(SCENARIOS) == 9 and {"streaming-pause", "stack-crash"} <= set(SCENARIOS)
    for sc in SCENARIOS:
        assert "streaming" in needed_nodes(sc) and "postgres" in needed_nodes(sc)
        assert ("api" in needed_nodes(sc)) is (sc == "api")


def test_capacity_lag_growth_is_the_slope_over_the_second_half() -> None:
    from clickguard_proof.bench_capacity import lag_growth

    # first half ignored (start-up); second half: sawtooth on a 100 records/s upward trend
    series = [(t / 2, (5000 if t < 20 else 0) + 100 * (t / 2) + (300 if t % 4 else 0))
              for t in range(41)]
    assert lag_growth(series, 20.0) == pytest.approx(100.0, abs=15)
    flat = [(t / 2, 1000 + (500 if t % 6 < 3 else 0)) for t in range(41)]
    assert abs(lag_growth(flat, 20.0)) < 30
    assert lag_growth([(11.0, 5), (12.0, None)], 20.0) is None


def test_demo_points_at_the_running_nodes_only() -> None:
    from clickguard_proof.demo import where_to_look

    s = Settings(api_port=16000, dagster_port=16300)
    text = where_to_look(s, ["postgres", "api", "dagster-webserver"])
    assert "Dagster UI      http://127.0.0.1:16300" in text
    assert "curl -s http://127.0.0.1:16000/health" in text
    assert "http://127.0.0.1:16000/docs" in text
    assert "Dagster UI" not in where_to_look(s, ["postgres", "api"])
    assert "curl" not in where_to_look(s, ["postgres"])
    # the batch endpoints are shown for today; the sensor line only when it was turned on
    today = datetime.now(UTC).date().isoformat()
    assert f"curl -s http://127.0.0.1:16000/metrics/funnel/{today}" in text
    assert "http://127.0.0.1:16000/redoc" in text
    assert "live_batch_sensor is on" not in text
    on = where_to_look(s, ["postgres", "api", "dagster-webserver"], live_batch=True)
    assert "live_batch_sensor is on" in on


def test_streaming_scenarios_need_a_measured_takeover_and_pause_needs_zero_fenced_commits() -> None:
    from clickguard_proof.chaos import ScenarioResult

    rec = {"ok": True}
    kill = ScenarioResult("streaming-kill", reconciliation=rec, rto_first_event_s=3.2)
    assert not kill.ok  # no takeover measured
    kill.takeovers = [{"takeover_s": 3.2}, {"takeover_s": None}]
    assert not kill.ok  # one kill without a successor commit
    kill.takeovers[1]["takeover_s"] = 4.0
    assert kill.ok
    pause = ScenarioResult("streaming-pause", reconciliation=rec, rto_first_event_s=7.5,
                           takeovers=[{"takeover_s": 7.5}])
    assert not pause.ok  # fencing not proven
    pause.fenced_commits = 1
    assert not pause.ok
    pause.fenced_commits = 0
    assert pause.ok
    assert ScenarioResult("broker-kill", reconciliation=rec, rto_first_event_s=1.0).ok


def test_random_plan_is_replayable_from_its_seed_and_draws_every_kind() -> None:
    """`chaos random --seed N` runs the same schedule again (a failure can be replayed); other
    seeds another one; over a few seeds every kind of fault and every broker comes up."""
    plan = random_plan(7, 20)
    assert len(plan) == 20 and plan == random_plan(7, 20)
    assert plan != random_plan(8, 20)
    assert random_plan(7, 5) == plan[:5]
    for f in plan:
        assert f.kind in RANDOM_KINDS and f.broker in {"kafka-1", "kafka-2", "kafka-3"}
        assert RANDOM_GAP_S[0] <= f.gap_s <= RANDOM_GAP_S[1]
        low, high = RANDOM_PAUSE_S if f.kind == "broker-pause" else RANDOM_DOWN_S
        assert low <= f.down_s <= high
    many = [f for seed in range(10) for f in random_plan(seed, 20)]
    assert {f.kind for f in many} == set(RANDOM_KINDS)
    assert {f.broker for f in many} == {"kafka-1", "kafka-2", "kafka-3"}


def test_random_is_its_own_scenario_not_part_of_all() -> None:
    assert RANDOM not in SCENARIOS  # `chaos all` = one fault per scenario, not --faults of them
    assert needed_nodes(RANDOM) == needed_nodes("postgres")
