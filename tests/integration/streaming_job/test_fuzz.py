"""Property: whatever is produced, the real stream keeps committing and accounts for every record.

Hypothesis generates schema-valid events with arbitrary values (any Unicode scalar incl. NUL and
control characters, strings up to 120,000 characters, 64-bit extremes, NaN/±inf prices,
timestamps anywhere in the signed 64-bit range), byte-level mutations of valid wire records,
random bytes, user headers and exact duplicates. Each example is produced to Kafka and run
through the real streaming job (private topics and database, see ``clickguard_proof.fuzz``);
then every record, by Kafka (partition, offset), must be in exactly one of events / dlq_events /
late_events or be a duplicate of a stored event, the ledger must balance, and stored values must
equal what was sent (nothing silently altered).

Bounded for CI by CLICKGUARD_FUZZ_EXAMPLES (default 5 examples of 20-150 records); the long
run is ``clickguard fuzz-stream --records 100000``. Shrinking is off: each example is a round
trip through the stream, and a failure already names the exact records (partition, offset).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clickguard.contract import EVENT_TYPES, encode
from clickguard_proof.fuzz import (
    EXTREME_FLOATS,
    EXTREME_INTS,
    MS_EXTREMES,
    POISON_MARKER,
    FuzzRecord,
    FuzzStream,
    account,
    fuzz_stream,
)
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration
MAX_VALUE = 900_000  # below Kafka's default 1 MB message limit

EXAMPLES = int(os.environ.get("CLICKGUARD_FUZZ_EXAMPLES", "5"))
_RUN: FuzzStream | None = None  # Hypothesis' @given cannot take a module fixture directly

scalars = st.characters(exclude_categories=("Cs",))  # Avro strings are UTF-8: no surrogates
texts = st.one_of(
    st.text(scalars, max_size=40),
    st.text(st.characters(max_codepoint=0x20), max_size=10),  # control characters and NUL
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x00", "é", "\U0001f600"]),
              st.sampled_from([1_000, 40_000, 120_000])),
)
longs = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(EXTREME_INTS))
ints32 = st.integers(-(2**31), 2**31 - 1)
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EXTREME_FLOATS))
millis = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(MS_EXTREMES),
    st.integers(-(10**9), 10**6).map(lambda d: int(time.time() * 1000) + d),  # around now
)


def mostly(sane: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``sane`` 7 times in 8, else ``hostile``: many events stay storable, so every path runs."""
    return st.one_of(*[sane] * 7, hostile)


recent = st.integers(0, 120_000).map(lambda d: int(time.time() * 1000) - d)
events = st.fixed_dictionaries({
    "event_id": mostly(st.uuids().map(str), texts),
    "event_ts": mostly(recent, millis), "ingest_ts": mostly(recent, millis),
    "source": mostly(st.just("fuzz"), texts),
    "session_id": mostly(st.integers(0, 10**6), longs),
    "user_id": st.none() | longs,
    "event_type": st.sampled_from(EVENT_TYPES), "item_id": st.none() | longs,
    "category": mostly(st.none() | st.sampled_from(["toys", "books"]), texts),
    "price": mostly(st.floats(0, 999_999.99), st.none() | floats),
    "quantity": mostly(st.integers(1, 10_000), st.none() | ints32),
    "page": st.one_of(*[st.none() | st.text(scalars, max_size=30)] * 6, texts,
                      st.just(POISON_MARKER)),
    "referrer": mostly(st.none() | st.text(scalars, max_size=30), texts),
})
headers = st.none() | st.lists(st.tuples(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
    st.none() | st.binary(max_size=24)), max_size=3)
keys = st.none() | st.binary(max_size=16)


@st.composite
def wire_records(draw: st.DrawFn, schema_id: int) -> FuzzRecord:
    """A schema-valid event, a byte-mutated one, or plain random bytes."""
    value = encode(draw(events), schema_id)[:MAX_VALUE]  # oversize: a truncated record
    kind = draw(st.sampled_from(["event", "event", "mutation", "bytes"]))
    if kind == "mutation":
        b = bytearray(value)
        for op, pos, data in draw(st.lists(st.tuples(
                st.integers(0, 3), st.integers(0, len(b)), st.binary(min_size=1, max_size=4)),
                min_size=1, max_size=4)):
            pos = min(pos, len(b))
            if op == 0 and pos < len(b):
                b[pos] ^= data[0] or 1  # flip bits
            elif op == 1:
                b[pos:pos] = data  # insert
            elif op == 2:
                del b[pos : pos + len(data)]  # delete
            else:
                del b[pos:]  # truncate
        value = bytes(b)
    elif kind == "bytes":
        value = draw(st.binary(max_size=64))
    return FuzzRecord(kind, draw(keys), value, draw(headers))


@pytest.fixture(scope="module")
def run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStream]:
    global _RUN
    with fuzz_stream(tmp_path_factory.mktemp("checkpoint")) as r:
        _RUN = r
        yield r
        _RUN = None


def _produce_and_account(data: Any) -> None:
    run = _RUN
    assert run is not None
    recs = data.draw(st.lists(wire_records(run.schema_id), min_size=20, max_size=150),
                     label="records")
    # exact duplicates: resend some records of this example (or of earlier ones)
    pool = recs + [s.record for s in run.sent[-500:]]
    dups = data.draw(st.lists(st.sampled_from(pool), max_size=15), label="duplicates")
    batches_before = account(run).ledger["batches"] if run.sent else 0
    run.produce([*recs, *(FuzzRecord("duplicate", d.key, d.value, d.headers) for d in dups)])
    run.wait_accounted(len(run.sent), timeout=600)  # the stream kept committing
    acc = account(run)
    assert acc.problems == []
    assert sum(acc.fates.values()) == len(run.sent) == acc.ledger["input_rows"]
    assert acc.ledger["batches"] > batches_before


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def _property(data: Any) -> None:
    _produce_and_account(data)


def test_every_record_is_accounted_exactly_once(run: FuzzStream) -> None:
    _property()
    fates = account(run).fates
    print(f"fuzz: {len(run.sent)} records, fates {dict(fates)}")
    assert fates["stored"] > 0 and sum(fates.values()) > fates["stored"]  # both paths ran
