"""Fault injection: turn generated events into wire records, each labelled with its expected fate.

Every record carries ``kind``, what the streaming job must do with it:

- ``valid``: stored once.
- ``duplicate``: the exact bytes (same key, same event_id, same ingest_ts) of an earlier valid
  record, as a producer retry would resend it; recognised by dedup, stored zero extra times.
- ``late``: a fresh event whose ``event_ts`` is ``late_minutes`` old (default 3x the streaming
  watermark), so it is older than any watermark the job can hold; routed to the late topic.
- ``malformed:<DlqReason>``: goes to the DLQ with that reason:
  ``not_wire_format`` (JSON text / a 3-byte stub / random bytes with a non-zero first byte),
  ``unknown_schema_id`` (a good body framed with schema id 999999),
  ``missing_required`` (written with a rogue schema lacking ``event_id`` that is registered under
  another subject so its id is real, or an empty ``event_id``),
  ``out_of_range`` (a negative purchase price, or an ``event_ts`` a day in the future),
  ``avro_decode_error`` (the contract's id, body truncated inside the event_id string),
  ``unstorable`` (schema-valid, but ``page`` holds a NUL character PostgreSQL text rejects).

Events that arrive labelled (``_kind``, from a YOOCHOOSE replay) keep a non-valid label and are
sent unchanged. Decisions come from a seeded RNG, so a seed gives exact, repeatable per-kind
counts. Events of anomaly blocks (``_anomaly``) are always ``valid`` so that the anomaly ground
truth stays exact.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from clickguard.contract import DlqReason, schema_json
from clickguard_producer.wire import TAIL, encode_event, header

VALID, DUPLICATE, LATE = "valid", "duplicate", "late"
UNKNOWN_SCHEMA_ID = 999_999
ROGUE_SUBJECT = "clickguard.faults.no-event-id-value"


def malformed(reason: DlqReason) -> str:
    return f"malformed:{reason.value}"


KINDS = (VALID, DUPLICATE, LATE, *(malformed(r) for r in DlqReason))


@dataclass(frozen=True)
class FaultConfig:
    """Per-record probabilities of each fault (0 = never). Duplicates are extra records."""

    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    not_wire_format_rate: float = 0.0
    unknown_schema_id_rate: float = 0.0
    missing_required_rate: float = 0.0
    out_of_range_rate: float = 0.0
    avro_decode_error_rate: float = 0.0
    unstorable_rate: float = 0.0
    late_minutes: float | None = None  # None = 3 x settings.stream_watermark_minutes

    @classmethod
    def uniform(cls, rate: float, **overrides: Any) -> FaultConfig:
        """Every fault kind at the same ``rate``."""
        names = [f.name for f in fields(cls) if f.name.endswith("_rate")]
        return cls(**{**dict.fromkeys(names, rate), **overrides})

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name.endswith("_rate"))


@dataclass(slots=True)
class Record:
    """One Kafka record to send and what must become of it."""

    key: bytes
    value: bytes
    kind: str
    event_id: str | None  # None when the bytes carry no readable id
    event_type: str | None


def rogue_schema() -> dict[str, Any]:
    """The contract without ``event_id``: a writer schema the job must reject (MISSING_REQUIRED)."""
    schema = schema_json()
    schema["name"] = "ClickEventWithoutId"
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "event_id"]
    return schema


class FaultInjector:
    """Encodes events with the contract's schema id and injects faults at the configured rates."""

    def __init__(
        self,
        schema_id: int,
        config: FaultConfig | None = None,
        seed: int = 7,
        watermark_minutes: float = 10.0,
        rogue_schema_id: int | None = None,
        clock: Callable[[], float] = time.time,
        recent: int = 1024,
    ) -> None:
        self.config = config or FaultConfig()
        self.rng = random.Random(seed)
        self.head = header(schema_id)
        self.unknown_head = header(UNKNOWN_SCHEMA_ID)
        self.rogue_head = header(rogue_schema_id) if rogue_schema_id is not None else None
        self._rogue_parsed: Any = None
        self.clock = clock
        self.late_ms = int((self.config.late_minutes or 3 * watermark_minutes) * 60_000)
        self.counts: Counter[str] = Counter()
        self._recent: list[Record] = []
        self._recent_max = recent
        c = self.config
        # cumulative thresholds for one uniform draw per event
        self._table: list[tuple[float, str]] = []
        acc = 0.0
        for rate, kind in (
            (c.late_rate, LATE),
            (c.not_wire_format_rate, malformed(DlqReason.NOT_WIRE_FORMAT)),
            (c.unknown_schema_id_rate, malformed(DlqReason.UNKNOWN_SCHEMA_ID)),
            (c.missing_required_rate, malformed(DlqReason.MISSING_REQUIRED)),
            (c.out_of_range_rate, malformed(DlqReason.OUT_OF_RANGE)),
            (c.avro_decode_error_rate, malformed(DlqReason.AVRO_DECODE_ERROR)),
            (c.unstorable_rate, malformed(DlqReason.UNSTORABLE)),
        ):
            if rate > 0:
                acc += rate
                self._table.append((acc, kind))
        if acc > 0.9:
            raise ValueError(f"fault rates add up to {acc:.2f}; keep them below 0.9")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def records(self, events: Iterable[dict[str, Any]]) -> Iterator[Record]:
        """Records for ``events`` (plus injected duplicates); ``ingest_ts`` = encode time."""
        rng, table, dup = self.rng, self._table, self.config.duplicate_rate
        clock, head, counts = self.clock, self.head, self.counts
        for event in events:
            event["ingest_ts"] = int(clock() * 1000)  # = _now_ms(), inlined: once per record
            kind = VALID
            preset = event.get("_kind")
            if preset is not None and preset != VALID:  # replayed data the contract rejects
                self.counts[preset] += 1
                yield Record(
                    str(event["session_id"]).encode(), encode_event(event, self.head), preset,
                    event["event_id"], event["event_type"],
                )
                continue
            if table and "_anomaly" not in event:
                u = rng.random()
                for threshold, k in table:
                    if u < threshold:
                        kind = k
                        break
            if kind == VALID:  # = _valid(event), inlined
                rec = Record(str(event["session_id"]).encode(), encode_event(event, head), VALID,
                             event["event_id"], event["event_type"])
            else:
                rec = self._fault(kind, event)
            counts[kind] += 1
            yield rec
            if kind == VALID and dup:  # the duplicates' reservoir (rng draws only when used)
                if len(self._recent) < self._recent_max:
                    self._recent.append(rec)
                else:
                    self._recent[rng.randrange(self._recent_max)] = rec
                if rng.random() < dup:
                    orig = rng.choice(self._recent)
                    self.counts[DUPLICATE] += 1
                    yield Record(orig.key, orig.value, DUPLICATE, orig.event_id, orig.event_type)

    def _valid(self, event: dict[str, Any]) -> Record:
        return Record(
            str(event["session_id"]).encode(),
            encode_event(event, self.head),
            VALID,
            event["event_id"],
            event["event_type"],
        )

    def _fault(self, kind: str, event: dict[str, Any]) -> Record:
        event.pop(TAIL, None)  # fields change below: encode them from the dict
        key = str(event["session_id"]).encode()
        eid, etype = event["event_id"], event["event_type"]
        rng = self.rng
        if kind == LATE:
            event["event_ts"] = event["ingest_ts"] - self.late_ms
            return Record(key, encode_event(event, self.head), kind, eid, etype)
        reason = DlqReason(kind.split(":", 1)[1])
        if reason is DlqReason.NOT_WIRE_FORMAT:
            variant = rng.randrange(3)
            if variant == 0:
                value = json.dumps({k: v for k, v in event.items() if k[0] != "_"}).encode()
            elif variant == 1:
                value = b"\x00\x01\x02"  # shorter than the 5-byte header
            else:
                value = bytes([rng.randrange(1, 256)]) + rng.randbytes(40)
            return Record(key, value, kind, None, etype)
        if reason is DlqReason.UNKNOWN_SCHEMA_ID:
            return Record(key, encode_event(event, self.unknown_head), kind, eid, etype)
        if reason is DlqReason.MISSING_REQUIRED:
            if self.rogue_head is not None and rng.random() < 0.5:
                return Record(key, self._encode_rogue(event), kind, None, etype)
            event["event_id"] = ""
            return Record(key, encode_event(event, self.head), kind, "", etype)
        if reason is DlqReason.OUT_OF_RANGE:
            if rng.random() < 0.5:
                event.update(
                    event_type="purchase", price=-round(rng.uniform(1, 100), 2),
                    quantity=1, item_id=event.get("item_id") or 100_000,
                )
            else:
                event["event_ts"] = event["ingest_ts"] + 24 * 3600 * 1000
            return Record(key, encode_event(event, self.head), kind, eid, event["event_type"])
        if reason is DlqReason.UNSTORABLE:
            event["page"] = f"/p\x00{rng.randrange(1000)}"
            return Record(key, encode_event(event, self.head), kind, eid, etype)
        # AVRO_DECODE_ERROR: the body ends inside the event_id string
        value = encode_event(event, self.head)
        return Record(key, value[: 5 + 1 + len(eid) // 2], kind, None, etype)

    def _encode_rogue(self, event: dict[str, Any]) -> bytes:
        import io

        import fastavro

        if self._rogue_parsed is None:
            self._rogue_parsed = fastavro.parse_schema(rogue_schema())
        buf = io.BytesIO()
        buf.write(self.rogue_head or b"")
        fastavro.schemaless_writer(buf, self._rogue_parsed, event)
        return buf.getvalue()


def expected_counts(records: Iterable[Record]) -> dict[str, int]:
    """Per-kind counts of a list of records (what the job's accounting must match)."""
    return dict(Counter(r.kind for r in records))
