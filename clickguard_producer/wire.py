"""A fast encoder of the click-event contract in the Confluent wire format.

`clickguard.contract.encode` (fastavro) is the reference; this hand-specialised encoder writes the
same bytes about 2-3x faster, which matters at 100k events/s on two cores. A unit test checks
byte equality with fastavro for every event type and every nullable field set/unset, so the two
cannot drift apart silently; if the .avsc changes, that test fails until this is updated.
"""

from __future__ import annotations

import struct
from typing import Any

from clickguard.contract import EVENT_TYPES, HEADER, MAGIC

_DOUBLE = struct.Struct("<d").pack


def _varint_loop(z: int) -> bytes:
    """Base-128 varint of a non-negative int, low 7-bit group first (the reference)."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# 14 bits per table lookup instead of 7 per loop turn: a millisecond timestamp (42 bits after
# zig-zag until 2039) is 3 lookups. _LAST[v] = varint of v < 2^14; _MID[v] = its two 7-bit
# groups, both with the continuation bit.
_LAST = [_varint_loop(v) for v in range(1 << 14)]
_MID = [bytes(((v & 0x7F) | 0x80, (v >> 7) | 0x80)) for v in range(1 << 14)]


def zigzag_varint(n: int) -> bytes:
    """Avro `long`/`int` encoding: zig-zag then base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x4000:
        return _LAST[z]
    if z < 0x1000_0000:
        return _MID[z & 0x3FFF] + _LAST[z >> 14]
    if z < 0x400_0000_0000:
        return _MID[z & 0x3FFF] + _MID[(z >> 14) & 0x3FFF] + _LAST[z >> 28]
    if z < 0x100_0000_0000_0000:
        return (
            _MID[z & 0x3FFF] + _MID[(z >> 14) & 0x3FFF] + _MID[(z >> 28) & 0x3FFF]
            + _LAST[z >> 42]
        )
    return _varint_loop(z)


_SMALL = [zigzag_varint(i) for i in range(4096)]
_EVENT_TYPE = {t: _SMALL[i] for i, t in enumerate(EVENT_TYPES)}
_NULL = b"\x00"
_SOME = b"\x02"  # union branch 1 (the non-null type)


def _long(n: int) -> bytes:
    return _SMALL[n] if 0 <= n < 4096 else zigzag_varint(n)


def _string(v: str) -> bytes:
    b = v.encode()
    n = len(b)
    return (_SMALL[n] if n < 4096 else zigzag_varint(n)) + b


def header(schema_id: int) -> bytes:
    """The 5-byte Confluent frame header: magic byte 0 and the big-endian schema id."""
    return HEADER.pack(MAGIC, schema_id)


# key of a generated event's pre-encoded fields ``source`` .. ``referrer`` (the same bytes
# `encode_tail` writes): the generator caches them per session and item, so encoding a normal
# event is its id and two timestamps. Whoever changes one of those fields drops the key first.
TAIL = "_tail"


def encode_event(event: dict[str, Any], head: bytes) -> bytes:
    """Encode ``event`` (contract field names; timestamps as epoch ms ints) after ``head``.

    Keys not in the contract (such as the generator's ``_anomaly`` tag) are ignored, as fastavro
    does; a ``TAIL`` key stands for the fields after ``ingest_ts``.
    """
    tail = event.get(TAIL)
    eid = event["event_id"].encode()
    n = len(eid)
    ts, its = event["event_ts"], event["ingest_ts"]
    return b"".join((
        head,
        _SMALL[n] if n < 4096 else zigzag_varint(n),
        eid,
        _TIMES.get(ts) or _time(ts),
        _TIMES.get(its) or _time(its),
        encode_tail(event) if tail is None else tail,
    ))


# at 100k+ events/s a millisecond timestamp repeats ~100 times: encode it once
_TIMES: dict[int, bytes] = {}


def _time(ms: int) -> bytes:
    if len(_TIMES) > 8192:
        _TIMES.clear()
    b = _TIMES[ms] = zigzag_varint(ms)
    return b


def encode_tail(event: dict[str, Any]) -> bytes:
    """The fields after ``ingest_ts``: source, session_id, user_id, event_type .. referrer."""
    return session_part(event["source"], event["session_id"], event.get("user_id")) + item_part(
        event["event_type"], event.get("item_id"), event.get("category"), event.get("price"),
        event.get("quantity"), event.get("page"),
    ) + referrer_part(event.get("referrer"))


def session_part(source: str, session_id: int, user_id: int | None) -> bytes:
    return (
        _string(source) + zigzag_varint(session_id)
        + (_NULL if user_id is None else _SOME + _long(user_id))
    )


def item_part(
    event_type: str, item_id: int | None, category: str | None, price: float | None,
    quantity: int | None, page: str | None,
) -> bytes:
    return b"".join((
        _EVENT_TYPE[event_type],
        _NULL if item_id is None else _SOME + _long(item_id),
        _NULL if category is None else _SOME + _string(category),
        _NULL if price is None else _SOME + _DOUBLE(price),
        _NULL if quantity is None else _SOME + _long(quantity),
        _NULL if page is None else _SOME + _string(page),
    ))


def referrer_part(referrer: str | None) -> bytes:
    return _NULL if referrer is None else _SOME + _string(referrer)


def event_id_of(value: bytes) -> str | None:
    """The event_id of a framed contract record without decoding the rest (None if unframed)."""
    if len(value) < 6 or value[0] != MAGIC:
        return None
    n = value[5]
    if n & 0x80 or n & 1:  # multi-byte or negative length: not one of our short ids
        return None
    n >>= 1
    return value[6 : 6 + n].decode(errors="replace")
