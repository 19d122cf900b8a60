"""Parallel producing: the shards give the same records in 1 process or several, all decodable."""

from __future__ import annotations

import io
import multiprocessing as mp
from collections import Counter
from datetime import UTC, datetime

import fastavro
import pytest

from clickguard.contract import encode, parsed_schema, split, validate
from clickguard_producer.faults import FaultConfig, FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig, GroundTruth
from clickguard_producer.parallel import (
    RunSpec,
    merge_ground_truth,
    shard_count,
    shard_records,
)
from clickguard_producer.wire import TAIL, encode_event, encode_tail, header

T0 = 1_764_100_000.0


class FrozenClock:
    """One fixed instant (picklable): timestamps cannot differ between processes."""

    def __call__(self) -> float:
        return T0


SPEC = RunSpec(seed=9, run_id="par", schema_id=11, rogue_id=12, anomaly_every=700,
               faults=FaultConfig.uniform(0.01), count=10_001)


def _records(shard_ids: list[int]) -> list[tuple[bytes, bytes, str]]:
    records, _gens = shard_records(SPEC, shard_ids, clock=FrozenClock())
    return [(r.key, r.value, r.kind) for r in records]


def test_shard_counts_add_up() -> None:
    for count in (0, 1, 3, 4, 10_001):
        assert sum(shard_count(count, i, 4) for i in range(4)) == count


def test_same_multiset_with_one_process_and_with_workers() -> None:
    one = _records(list(range(SPEC.shards)))
    with mp.get_context("fork").Pool(2) as pool:  # the workers' split: shards w, w+2, ...
        parts = pool.map(_records, [[0, 2], [1, 3]])
    many = [r for part in parts for r in part]
    assert len(one) == len(many) == SPEC.count
    assert Counter(one) == Counter(many)
    kinds = Counter(k for _, _, k in one)
    assert kinds["valid"] > 9_000 and kinds["duplicate"] > 0 and len(kinds) >= 8
    # every valid record decodes with the contract, ids are unique across the shards
    valid = [v for _, v, k in one if k == "valid"]
    ids = [decode_id(v) for v in valid]
    assert len(set(ids)) == len(ids)


def decode(value: bytes) -> tuple[int, dict]:
    schema_id, body = split(value)
    return schema_id, fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(), None)


def decode_id(value: bytes) -> str:
    schema_id, event = decode(value)
    assert schema_id == SPEC.schema_id
    assert validate(event, now=datetime.fromtimestamp(T0, UTC)) is None
    assert encode(event, schema_id) == value  # the fast encoder wrote the reference bytes
    return event["event_id"]


def test_shards_share_the_catalogue_but_not_sessions() -> None:
    gens = [Generator(GeneratorConfig(seed=1, run_id="s", shard=i, shards=4)) for i in range(4)]
    items = [{(it.item_id, it.category, it.price) for it in g.catalog.items} for g in gens]
    assert all(x == items[0] for x in items)
    sessions = [{e["session_id"] for e in g.take(2_000)} for g in gens]
    assert not set.intersection(*sessions)
    assert not sessions[0] & sessions[1]


def test_one_shard_is_the_classic_stream() -> None:
    a = Generator(GeneratorConfig(seed=5, run_id="c"), clock=FrozenClock()).take(500)
    b = Generator(GeneratorConfig(seed=5, run_id="c", shard=0, shards=1),
                  clock=FrozenClock()).take(500)
    assert a == b


def test_shard_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="shard 4"):
        Generator(GeneratorConfig(shard=4, shards=4))


def test_cached_tail_is_the_reference_encoding() -> None:
    gen = Generator(GeneratorConfig(seed=2, run_id="t", anomaly_every=2_000), clock=FrozenClock())
    n = 0
    for e in gen.take(5_000):
        plain = {k: v for k, v in e.items() if k != TAIL}
        if TAIL in e:
            n += 1
            assert e[TAIL] == encode_tail(plain)
        assert encode_event(e, header(3)) == encode_event(plain, header(3))
    assert n > 4_500  # the normal events; anomaly blocks are encoded from their fields


def test_faults_never_send_a_stale_tail() -> None:
    """A fault that changes a field after generation must re-encode it (the contract says so)."""
    gen = Generator(GeneratorConfig(seed=4, run_id="f"), clock=FrozenClock())
    inj = FaultInjector(3, FaultConfig(out_of_range_rate=0.5, unstorable_rate=0.3), seed=4,
                        clock=FrozenClock())
    checked = Counter()
    for rec in inj.records(gen.events(400)):
        if rec.kind.startswith("malformed:"):
            _sid, event = decode(rec.value)
            if rec.kind.endswith("unstorable"):
                assert "\x00" in event["page"]
            elif event["event_ts"] == int(T0 * 1000):  # the negative-price variant
                assert event["price"] < 0 and event["event_type"] == "purchase"
            checked[rec.kind] += 1
    assert len(checked) == 2


def test_ground_truth_of_shards_merges_same_window() -> None:
    a = GroundTruth("TRAFFIC_SPIKE", "books", "w0", "w1", 3000, category="books")
    b = GroundTruth("TRAFFIC_SPIKE", "books", "w0", "w1", 3000, category="books")
    c = GroundTruth("HIGH_FREQUENCY", "7", "w0", "w1", 60, session_id=7)
    merged = merge_ground_truth([[a, c], [b]])
    assert sorted((g.type, g.events) for g in merged) == [
        ("HIGH_FREQUENCY", 60), ("TRAFFIC_SPIKE", 6000),
    ]


class SteppingClock:
    """A clock the test moves by hand (one process only)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_a_record_gets_its_ingest_ts_when_the_sender_takes_it() -> None:
    """A paced sender takes one record per time slot: each record's ingest_ts must be the time
    it was taken, not when a batch of the shard's records was pulled ahead of it."""
    clock = SteppingClock()
    records, _gens = shard_records(SPEC, [0, 1, 2, 3], clock=clock)
    stamps = []
    for i, rec in zip(range(600), records, strict=False):  # across two interleave turns
        if rec.kind == "valid":
            stamps.append((i, decode(rec.value)[1]["ingest_ts"]))
        clock.now += 1.0  # the next slot, one second later
    assert len(stamps) > 500
    for i, ts in stamps:  # taken at slot i: stamped T0 + i seconds
        assert ts == datetime.fromtimestamp(T0 + i, UTC), i
