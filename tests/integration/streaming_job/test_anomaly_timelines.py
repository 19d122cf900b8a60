"""No anomaly rule fires on steady traffic along real timelines; real anomalies still do (issue 9).

The real streaming job (private topics, one query for the module) is fed steady generated traffic
with faults (duplicates, late events, malformed records) along timelines that trip naive rules: a
cold start (first minute partial, no history), a stream restart with minutes of backlog, a real
broker outage (all three brokers stopped) that leaves a gap of minutes in event time, midnight
UTC, and a YOOCHOOSE replay at high speed through the literal `clickguard produce --replay`.

The rules judge EVENT time, so a scenario's minutes are produced faster than real time: the
generator runs on a simulated clock (`SimClock`) in a random past era (no other data there; each
test's era is later than the previous one, so the module's watermark never routes it late). The
fault injector uses the same clock, so its late events are late against that era; its
`out_of_range` kind (event time a day ahead of the clock) is left out: in a past era a day ahead
is still valid, and would move the watermark a day forward.

Each timeline ends with a positive control: one block of each rule, above its threshold, which
must be detected, exactly once each, and nothing else: the rules were silent, not dead.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultConfig, FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig, GroundTruth
from clickguard_proof.evaluation import Detection, detections_between, score
from clickguard_stack.manager import Stack
from tests.integration.streaming_job.conftest import StreamRun, private_stream

pytestmark = pytest.mark.integration

RATE = 50.0  # simulated events/s: 3,000 a minute overall, 100-250 in the mid-sized categories
FAULTS = FaultConfig.uniform(0.003, out_of_range_rate=0.0)
REPO = Path(__file__).resolve().parents[3]
# random past eras, one per test, in file order (module-scoped query: event time must advance)
_ERA0 = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(0, 200) * 2)
_eras = iter(range(100))


def next_era(hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    day = _ERA0 + timedelta(days=next(_eras) + 1)
    return day.replace(hour=hour, minute=minute, second=second)


class SimClock:
    """Event time running faster than the wall clock: every reading advances 1/rate s."""

    def __init__(self, start: datetime, rate: float) -> None:
        self.t = start.timestamp()
        self.step = 1.0 / rate

    def __call__(self) -> float:
        t = self.t
        self.t += self.step
        return t

    def peek(self) -> float:
        return self.t

    def jump(self, seconds: float) -> None:
        self.t += seconds

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class Timeline:
    """A generator and fault injector on a simulated clock, sending to the module's stream."""

    def __init__(self, run: StreamRun, start: datetime, seed: int) -> None:
        self.run = run
        self.start = start
        self.clock = SimClock(start, RATE)
        # sessions last minutes (an event every ~20 s each), as in clickguard_proof.anomaly_quality
        self.gen = Generator(
            GeneratorConfig(seed=seed, concurrent_sessions=int(RATE * 20)), clock=self.clock
        )
        contract_id, rogue_id = register_schemas(run.settings, run.settings.topic_raw)
        self.injector = FaultInjector(
            contract_id, FAULTS, seed=seed, rogue_schema_id=rogue_id, clock=self.clock.peek,
            watermark_minutes=run.settings.stream_watermark_minutes,
        )
        self.produced = run.accounted()

    def steady(self, minutes: float) -> list[dict[str, Any]]:
        return self.gen.take(int(minutes * 60 * RATE))

    def send(self, events: list[dict[str, Any]], wait: bool = True) -> None:
        summary = produce(self.run.settings, self.injector.records(events))
        assert summary.failed == 0, summary.errors
        self.produced += summary.acknowledged
        if wait:
            self.run.wait_accounted(self.produced, timeout=600)

    def controls(self) -> list[dict[str, Any]]:
        """One block of each rule, above its threshold, into the minute that just ended."""
        g = self.gen
        return [
            *g.inject("HIGH_FREQUENCY", size=56), *g.inject("BOT_LIKE", size=56, distinct=2),
            *g.inject("TRAFFIC_SPIKE", level=1.5), *g.inject("ERROR_BURST", size=130),
        ]

    def detections(self) -> list[Detection]:
        return detections_between(
            self.run.conn, self.start - timedelta(hours=1), self.clock.now + timedelta(hours=1)
        )

    def assert_only_controls_detected(self) -> None:
        dets = self.detections()
        truths: list[GroundTruth] = self.gen.ground_truth
        assert len(truths) == 4
        scores = score(truths, dets, steady_hours=1.0)
        summary = {r: (v.found, v.detected, v.false_alarms) for r, v in scores.items()}
        assert summary == {r: (1, 1, 0) for r in scores}, (summary, dets)

    def judged_minutes(self) -> int:
        """Category minutes in this timeline big enough for TRAFFIC_SPIKE to judge them."""
        row = self.run.conn.execute(
            "SELECT count(*) FROM minute_counts WHERE scope = 'category' AND minute >= %s "
            "AND minute < %s AND events >= %s",
            (self.start, self.clock.now, self.run.settings.spike_min_events),
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamRun]:
    """One query for the module, with the default (large) batches: fewer batches on a busy box."""
    env = {"CLICKGUARD_STREAM_MAX_OFFSETS_PER_TRIGGER": "50000"}
    with private_stream(tmp_path_factory.mktemp("checkpoint"), extra_env=env) as stream:
        yield stream


def test_cold_start_is_silent(run: StreamRun) -> None:
    """The stream's first batches and a series whose first minute is partial: warm-up only."""
    tl = Timeline(run, next_era(second=35), seed=11)  # first minute: 25 s of traffic
    tl.send(tl.steady(6))
    assert tl.detections() == []
    assert tl.judged_minutes() > 15  # the spike rule had real minutes to judge
    tl.send(tl.controls() + tl.steady(1))
    tl.assert_only_controls_detected()


def test_across_midnight_utc_is_silent(run: StreamRun) -> None:
    tl = Timeline(run, next_era(hour=23, minute=55), seed=12)
    tl.send(tl.steady(8))  # 23:55 → 00:03, the baseline spans midnight
    assert tl.clock.now.hour == 0
    assert tl.detections() == []
    tl.send(tl.controls() + tl.steady(1))
    tl.assert_only_controls_detected()


def test_restart_with_a_backlog_of_minutes_is_silent(run: StreamRun) -> None:
    tl = Timeline(run, next_era(), seed=13)
    tl.send(tl.steady(4))
    run.stack.control("stop", "streaming")
    tl.send(tl.steady(7), wait=False)  # seven minutes of event time wait in Kafka
    run.stack.control("start", "streaming")
    run.wait_accounted(tl.produced, timeout=600)
    assert tl.detections() == []
    tl.send(tl.controls() + tl.steady(1))
    tl.assert_only_controls_detected()


def test_broker_outage_gap_is_not_a_spike_when_traffic_resumes(run: StreamRun) -> None:
    """All brokers down: nothing can be produced, so event time has a gap of minutes."""
    tl = Timeline(run, next_era(), seed=14)
    tl.send(tl.steady(5.5))  # ends mid-minute: the minute before the gap is partial
    stack = run.stack
    brokers = [f"kafka-{i}" for i in range(1, run.settings.kafka_nodes + 1)]
    for b in brokers:
        stack.control("stop", b)
    time.sleep(5)
    tl.clock.jump(12 * 60)  # the outage, in event time: 12 minutes without a single event
    stack.up(brokers, timeout=300)
    tl.send(tl.steady(4.5))  # the first minute after it is partial too
    dets = tl.detections()
    assert dets == []
    before = tl.run.conn.execute(
        "SELECT count(*) FROM minute_counts WHERE scope = 'all' AND minute >= %s AND minute < %s",
        (tl.start, tl.clock.now),
    ).fetchone()
    assert before is not None and before[0] == 11  # 6 minutes, the gap, 5 minutes: really a gap
    tl.send(tl.controls() + tl.steady(1))
    tl.assert_only_controls_detected()


def yoochoose_tiles(path: Path, copies: int, sample_dir: Path) -> int:
    """The sample sessions repeated ``copies`` times, 2 s apart, each copy its own session ids."""
    lines = [ln for f in sorted(sample_dir.glob("yoochoose-*.dat"))
             for ln in f.read_text().splitlines() if ln.strip()]
    firsts: dict[str, datetime] = {}
    for ln in lines:
        sid, ts = ln.split(",")[:2]
        t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        firsts[sid] = min(firsts.get(sid, t), t)
    t0 = datetime(2014, 4, 1, tzinfo=UTC)
    base = random.randrange(1, 1_000) * 10_000_000
    out = []
    for j in range(copies):
        for ln in lines:
            sid, ts, *rest = ln.split(",")
            t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
            new_t = t0 + timedelta(seconds=2 * j) + (t - firsts[sid])
            stamp = new_t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{new_t.microsecond // 1000:03d}Z"
            out.append(",".join([str(base + j * 100 + int(sid)), stamp, *rest]))
    path.write_text("\n".join(out) + "\n")
    return len(out)


def test_yoochoose_replay_at_high_speed_is_silent(run: StreamRun, tmp_path: Path) -> None:
    """`clickguard produce --replay` at 60x: a big first minute against no history stays silent.

    Last in the module: a replay's event time is the wall clock (after every past era).
    """
    data = tmp_path / "yoochoose-tiled.dat"
    n = yoochoose_tiles(data, 1000, REPO / "tests" / "data")
    before = run.accounted()
    t0 = datetime.now(UTC)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "clickguard"), "produce", "--replay", str(data),
         "--speed", "60", "--topic", run.settings.topic_raw, "--quiet"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run.wait_accounted(before + n, timeout=600)
    t1 = datetime.now(UTC)
    dets = detections_between(run.conn, t0 - timedelta(minutes=2), t1 + timedelta(minutes=2))
    assert dets == []
    big = run.conn.execute(
        "SELECT max(events) FROM minute_counts WHERE scope = 'all' AND minute >= %s",
        (t0.replace(second=0, microsecond=0),),
    ).fetchone()
    assert big is not None and big[0] >= 3_000  # a minute far above spike_min_events
