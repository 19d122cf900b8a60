"""YOOCHOOSE replay: parsing both line kinds, time order, pacing by speed, expected outcomes."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickguard.contract import HEADER, MAGIC, DlqReason, avro_int_range, parsed_schema, split
from clickguard_producer.faults import VALID, FaultInjector, malformed
from clickguard_producer.wire import encode_event
from clickguard_producer.yoochoose import (
    ParseError,
    YooEvent,
    parse_line,
    parse_ts,
    read_files,
    replay,
)

DATA = Path(__file__).resolve().parents[2] / "data"
CLICKS, BUYS = DATA / "yoochoose-clicks-sample.dat", DATA / "yoochoose-buys-sample.dat"


def test_parse_lines() -> None:
    assert parse_ts("2014-04-07T10:51:09.277Z") == 1_396_867_869_277
    assert parse_line("1,2014-04-07T10:51:09.277Z,214536502,0\n") == YooEvent(
        1, 1_396_867_869_277, 214536502, category=None
    )
    assert parse_line("11,2014-04-03T10:44:35.672Z,214821275,S").category == "S"
    buy = parse_line("11,2014-04-03T11:04:11.417Z,214821371,1046,1")
    assert (buy.is_buy, buy.price, buy.quantity, buy.category) == (True, 1046.0, 1, None)
    for bad in ("1,2,3", "x,2014-04-07T10:51:09.277Z,1,0", "1,yesterday,1,0"):
        with pytest.raises(ParseError):
            parse_line(bad)


def test_read_files_sorts_both_kinds_by_time(tmp_path: Path) -> None:
    events = read_files([CLICKS, BUYS])
    assert len(events) == 21
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    assert events[0].session_id == 11  # 2014-04-03 comes before 2014-04-07
    bad = tmp_path / "bad.dat"
    bad.write_text("1,2014-04-07T10:51:09.277Z,214536502,0\n1,2\n")
    with pytest.raises(ParseError, match=r"bad\.dat:2"):
        read_files([bad])


class FakeTime:
    """A virtual clock whose sleep() advances it: pacing is checked without waiting."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.slept += s


def test_replay_shifts_to_now_and_paces_by_speed() -> None:
    events = read_files([CLICKS, BUYS])
    t = FakeTime(1_764_100_000.0)
    out = list(replay(events, speed=60, run_id="r", clock=t.clock, sleep=t.sleep))
    span_s = (events[-1].ts_ms - events[0].ts_ms) / 1000
    assert out[0]["event_ts"] == 1_764_100_000_000
    assert t.slept == pytest.approx(span_s / 60, abs=0.01)
    # gaps are the original gaps / 60
    for a, b, ea, eb in zip(out, out[1:], events, events[1:], strict=False):
        assert b["event_ts"] - a["event_ts"] == pytest.approx((eb.ts_ms - ea.ts_ms) / 60, abs=1)
    assert [e["event_id"] for e in out[:2]] == ["yc-r-0", "yc-r-1"]
    kinds = {(e["event_type"], e["_kind"]) for e in out}
    assert kinds == {
        ("click", VALID), ("purchase", VALID), ("purchase", malformed(DlqReason.OUT_OF_RANGE)),
    }


def test_replay_as_fast_as_possible_and_encodable() -> None:
    t = FakeTime(1_764_100_000.0)
    out = list(replay(read_files([CLICKS, BUYS]), speed=0, clock=t.clock, sleep=t.sleep))
    assert t.slept == 0 and {e["event_ts"] for e in out} == {1_764_100_000_000}
    recs = list(FaultInjector(3).records(out))
    assert [r.kind for r in recs] == [e["_kind"] for e in out]
    assert sum(r.kind == VALID for r in recs) == 20


def _yoo_lines() -> st.SearchStrategy[bytes]:
    """Click and buy lines with odd but typed values (huge ids, far times, nan prices, odd
    categories), and now and then any bytes at all."""
    ts = st.datetimes().map(lambda d: d.isoformat() + "Z")
    big = st.integers(-(2**70), 2**70).map(str)
    click = st.tuples(big, ts, big, st.one_of(st.sampled_from(["0", "S", "12"]),
                                              st.text(max_size=8).filter(lambda t: "," not in t)))
    buy = st.tuples(big, ts, big, st.floats().map(str), big)
    typed = st.one_of(click, buy).map(lambda parts: ",".join(parts).encode())
    return st.one_of(typed, typed, typed, st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_yoo_lines(), max_size=6))
def test_any_file_is_events_or_one_parse_error(lines: list[bytes]) -> None:
    """Whatever the bytes (Hypothesis), reading is events or a ParseError naming file and line
    (binary once ended in a UnicodeDecodeError traceback, an empty file in a run of nothing),
    and every replayed event is contract-shaped with an expected outcome."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "odd.dat"
        path.write_bytes(b"\n".join(lines))
        try:
            events = read_files([path])
        except ParseError as exc:
            assert str(exc).startswith(f"{path}:") or "nothing to replay" in str(exc)
            return
    assert events and all(isinstance(e, YooEvent) for e in events)
    for event in replay(events, speed=0):
        kind = event["_kind"]
        assert kind == VALID or kind in {malformed(r) for r in DlqReason}, kind
        # what is sent is the contract's Avro: an id past 64 bits was once sent as corrupt bytes
        schema_id, body = split(encode_event(dict(event), HEADER.pack(MAGIC, 1)))
        decoded = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(), None)
        assert schema_id == 1
        assert {k: v for k, v in decoded.items() if k not in ("event_ts", "ingest_ts", "price")} \
            == {k: v for k, v in event.items()
                if k in decoded and k not in ("event_ts", "ingest_ts", "price")}
        assert decoded["price"] == event["price"] or math.isnan(event["price"])


def test_integer_bounds_come_from_the_contracts_avro_types() -> None:
    """The replay's integer checks follow click_event.avsc, not widths written down twice."""
    assert avro_int_range("session_id") == (-(2**63), 2**63 - 1)  # long
    assert avro_int_range("item_id") == (-(2**63), 2**63 - 1)  # ["null", "long"]
    assert avro_int_range("quantity") == (-(2**31), 2**31 - 1)  # ["null", "int"]
    with pytest.raises(ParseError, match="does not fit quantity"):
        parse_line(f"1,2014-04-06T18:26:03.000Z,214587797,1000,{2**31}")
    assert parse_line(f"1,2014-04-06T18:26:03.000Z,214587797,1000,{2**31 - 1}").quantity \
        == 2**31 - 1
