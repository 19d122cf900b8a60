"""Values PostgreSQL cannot store are rejected before loading (reason and detail), not altered."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from typing import Any

import fastavro
import psycopg
import psycopg.errors
import pyarrow as pa
import pytest

from clickguard.contract import KEY_MAX_BYTES, DlqReason, encode, parsed_schema, pg_text
from streaming_job.decode import HEADERS, SchemaCache, decode_table, decode_value
from streaming_job.sink import db_error_detail, header_arrays, header_pairs, is_data_error

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def cache() -> SchemaCache:
    return SchemaCache(lambda _id: parsed_schema())


def event(**kw: Any) -> dict[str, Any]:
    ev = {"event_id": "e1", "event_ts": NOW_MS, "ingest_ts": NOW_MS, "source": "t",
          "session_id": 1, "event_type": "click", "page": "/p"}
    return {**ev, **kw}


def verdict(**kw: Any) -> tuple[str | None, str | None]:
    v = decode_value(encode(event(**kw), 1), cache(), now=NOW, max_string_bytes=100)
    return (None if v.reason is None else str(v.reason)), v.detail


@pytest.mark.parametrize(("field", "value", "reason", "detail_part"), [
    ("page", "/a\x00b", "unstorable", "page contains U+0000 (NUL) at character 2"),
    ("referrer", "\x00", "unstorable", "referrer contains U+0000"),
    ("category", "x\x00", "unstorable", "category contains U+0000"),
    ("source", "\x00", "unstorable", "source contains U+0000"),
    ("event_id", "id\x00", "unstorable", "event_id contains U+0000"),
    ("page", "é" * 51, "unstorable", "page is 102 bytes long, more than 100"),
    ("event_id", "x" * (KEY_MAX_BYTES + 1), "unstorable", f"more than {KEY_MAX_BYTES}"),
    ("price", math.nan, "out_of_range", "price nan"),
    ("price", math.inf, "out_of_range", "price inf"),
    ("price", -math.inf, "out_of_range", "price -inf"),
    ("session_id", -(2**63), "out_of_range", "session_id"),
    ("quantity", 2**31 - 1, "out_of_range", "quantity"),
    ("ingest_ts", 0, "out_of_range", "ingest_ts 1970-01-01T00:00:00+00:00 before 2000"),
    ("ingest_ts", NOW_MS + 3_600_000, "out_of_range", "ingest_ts"),
    ("event_ts", -(2**62), "out_of_range", "timestamp outside years 1-9999"),
    ("ingest_ts", 2**63 - 1, "out_of_range", "timestamp outside years 1-9999"),
    ("event_ts", 253_402_300_800_000, "out_of_range", "timestamp outside years 1-9999"),
])
def test_rejected_with_reason(field: str, value: Any, reason: str, detail_part: str) -> None:
    got, detail = verdict(**{field: value})
    assert got == reason
    assert detail is not None and detail_part in detail
    assert "\x00" not in detail  # the detail is itself storable


@pytest.mark.parametrize("page", [
    "\x01\x02\x1f\x7f", "\u200b\ufeff\ufffe\uffff", "a,b\n\r\\.\"'", "\U0001f600" * 25, "",
])
def test_storable_oddities_pass_unchanged(page: str) -> None:
    v = decode_value(encode(event(page=page), 1), cache(), now=NOW, max_string_bytes=100)
    assert v.ok, v.detail
    assert v.event is not None and v.event["page"] == page  # never silently altered


def test_extreme_but_storable_numbers_pass() -> None:
    v = decode_value(encode(event(user_id=-(2**63), item_id=2**63 - 1, session_id=2**63 - 1,
                                  event_type="purchase", price=999_999.99, quantity=10_000), 1),
                     cache(), now=NOW)
    assert v.ok, v.detail


def test_decode_table_keeps_headers_only_where_raw_bytes_are_kept() -> None:
    good, bad = encode(event(), 1), encode(event(event_id="e2", page="\x00"), 1)
    hdr = [{"key": "traceparent", "value": b"00-abc-01"}, {"key": "x", "value": None}]
    table = pa.table({
        "key": [b"k1", b"k2"], "value": [good, bad], "partition": [0, 0], "offset": [5, 6],
        "timestamp": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
        "headers": pa.array([hdr, hdr], HEADERS),
    })
    out = decode_table(table, cache(), now=NOW).to_pylist()
    assert [r["status"] for r in out] == ["ok", "dlq"]
    assert out[0]["raw_headers"] is None and out[0]["page"] == "/p"
    assert out[1]["raw_headers"] == hdr and out[1]["reason"] == DlqReason.UNSTORABLE
    assert out[1]["page"] is None  # the unstorable value never reaches the event columns


def test_dlq_event_id_and_detail_are_made_storable() -> None:
    assert pg_text("a\x00b") == "a\\x00b"
    assert pg_text("x" * 3000, 10) == "x" * 10 + "…"
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed_schema(), event(event_id="id\x00", page="\x00"))
    table = pa.table({
        "key": [None], "value": [b"\x00\x00\x00\x00\x01" + body.getvalue()], "partition": [0],
        "offset": [1], "timestamp": pa.array([NOW], pa.timestamp("us", tz="UTC")),
    })
    row = decode_table(table, cache(), now=NOW).to_pylist()[0]
    assert row["event_id"] == "id\\x00" and row["raw_headers"] is None


def test_header_conversions_keep_order_duplicates_and_nulls() -> None:
    hdr = [{"key": "a", "value": b"1"}, {"key": "a", "value": None}, {"key": "ü", "value": b""}]
    assert header_pairs(hdr) == [("a", b"1"), ("a", None), ("ü", b"")]
    assert header_arrays(hdr) == ([b"a", b"a", "ü".encode()], [b"1", None, b""])
    assert header_arrays(None) == (None, None) and header_pairs(None) == []


def test_data_errors_are_told_from_other_failures() -> None:
    def err(state: str) -> psycopg.Error:
        return psycopg.errors.lookup(state)("boom\nDETAIL: x")  # psycopg's class for the code

    assert is_data_error(err("22021"))  # invalid byte sequence (NUL in COPY)
    assert is_data_error(err("23514"))  # check constraint
    assert is_data_error(err("54000"))  # index row too large
    assert not is_data_error(err("08006"))  # connection failure
    assert not is_data_error(err("42501"))  # insufficient privilege
    assert not is_data_error(err("57P01"))  # admin shutdown
    assert not is_data_error(psycopg.OperationalError("server closed the connection"))
    assert db_error_detail(err("22023")) == "PostgreSQL 22023: boom"
