"""The delimiters handed to kcat survive kcat's own parsing and split the file back exactly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickguard_producer.faults import Record
from clickguard_proof import bench


def kcat_parse_delim(arg: str) -> bytes:
    """What kcat's ``parse_delim`` makes of ``-D``/``-K``: escapes decoded into a C string."""
    out = re.sub(r"\\x([0-9a-fA-F]+)", lambda m: chr(int(m.group(1), 16) & 0xFF), arg)
    raw = out.encode("latin-1")
    return raw.split(b"\0", 1)[0]  # strlen(): the string ends at the first NUL


records = st.lists(
    st.builds(Record, key=st.binary(max_size=40), value=st.binary(min_size=1, max_size=400),
              kind=st.just("valid"), event_id=st.none(), event_type=st.none()),
    min_size=1, max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(records)
def test_delimiters_split_the_kcat_input_back_into_the_same_records(recs: list[Record]) -> None:
    kd, md = bench._delimiters(recs)
    key_delim = kcat_parse_delim(bench._escape(kd))
    msg_delim = kcat_parse_delim(bench._escape(md))
    assert (key_delim, msg_delim) == (kd, md)  # kcat sees all 8 bytes of each
    data = b"".join(r.key + kd + r.value + md for r in recs)
    messages = [m for m in data.split(msg_delim) if m]  # kcat skips empty messages
    assert [tuple(m.split(key_delim, 1)) for m in messages] == [(r.key, r.value) for r in recs]


def test_a_random_draw_with_a_nul_byte_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI on 2026-12-05: a NUL cut kcat's delimiter short and 6,000 records became 6,020."""
    draws = iter([b"ab\0cdefg", b"12345678", b"ABCDEFGH", b"87654321"])
    monkeypatch.setattr(bench.os, "urandom", lambda n: next(draws))
    one = [Record(b"k", b"v", "valid", None, None)]
    assert bench._delimiters(one) == (b"ABCDEFGH", b"87654321")
