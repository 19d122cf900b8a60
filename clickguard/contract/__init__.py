"""The event contract: Avro schema, Confluent wire format, and a schema-registry client.

Wire format (Confluent): byte 0 = magic 0, bytes 1-4 = schema id (big-endian), then the Avro
binary body. Readers resolve the writer's schema (by id, from the registry) against the reader
schema in this folder, so producers on an older or newer compatible schema both decode.
"""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
import httpx

SCHEMA_PATH = Path(__file__).parent / "click_event.avsc"
EVENT_TYPES = (
    "page_view", "click", "add_to_cart", "remove_from_cart", "checkout", "purchase", "error",
)
MAGIC = 0
HEADER = struct.Struct(">bI")


class WireFormatError(ValueError):
    """The bytes are not a Confluent-framed Avro record."""


def schema_json() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache
def parsed_schema() -> Any:
    return fastavro.parse_schema(schema_json())


_AVRO_INT_BITS = {"int": 32, "long": 64}


@lru_cache
def avro_int_range(field: str) -> tuple[int, int]:
    """(min, max) of the contract's Avro int or long ``field`` (nullable or not): a value beyond
    it has no encoding, so whoever builds a record refuses it before writing corrupt bytes."""
    (spec,) = (f for f in schema_json()["fields"] if f["name"] == field)
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    names = {t["type"] if isinstance(t, dict) else t for t in types} - {"null"}
    (name,) = names
    bits = _AVRO_INT_BITS[name]
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def subject(topic: str) -> str:
    """TopicNameStrategy subject for record values."""
    return f"{topic}-value"


def encode(record: dict[str, Any], schema_id: int, schema: Any | None = None) -> bytes:
    """Serialize ``record`` with ``schema`` (default: the contract) in the wire format."""
    buf = io.BytesIO()
    buf.write(HEADER.pack(MAGIC, schema_id))
    fastavro.schemaless_writer(buf, schema or parsed_schema(), record)
    return buf.getvalue()


def split(value: bytes | None) -> tuple[int, bytes]:
    """(schema id, Avro body) of a framed record; WireFormatError when not framed."""
    if value is None or len(value) < HEADER.size + 1:
        raise WireFormatError("record shorter than the 5-byte Confluent header")
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC:
        raise WireFormatError(f"magic byte {magic} is not 0")
    return schema_id, value[HEADER.size :]


class RegistryClient:
    """Minimal client of the Confluent schema-registry REST API (Apicurio's ccompat/v7)."""

    CT = "application/vnd.schemaregistry.v1+json"

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        """``url`` may carry credentials (``https://user:password@host``, percent-encoded, as
        ``Settings.schema_registry_url`` builds them): they become basic auth, and ``self.url``
        (which messages print) is the URL without them."""
        parsed = httpx.URL(url)
        auth = None
        if parsed.username or parsed.password:
            auth = httpx.BasicAuth(parsed.username, parsed.password)
            parsed = parsed.copy_with(userinfo=b"")
        self.url = str(parsed).rstrip("/")
        self.http = httpx.Client(timeout=timeout, headers={"Content-Type": self.CT}, auth=auth)
        self._by_id: dict[int, Any] = {}

    def register(self, subj: str, schema: dict[str, Any] | str) -> int:
        body = {"schema": schema if isinstance(schema, str) else json.dumps(schema)}
        r = self.http.post(f"{self.url}/subjects/{subj}/versions", json=body)
        if r.status_code == 409:
            raise IncompatibleSchemaError(r.text)
        r.raise_for_status()
        return int(r.json()["id"])

    def set_compatibility(self, subj: str, level: str = "BACKWARD") -> None:
        r = self.http.put(f"{self.url}/config/{subj}", json={"compatibility": level})
        r.raise_for_status()

    def is_compatible(self, subj: str, schema: dict[str, Any]) -> bool:
        r = self.http.post(
            f"{self.url}/compatibility/subjects/{subj}/versions/latest",
            json={"schema": json.dumps(schema)},
        )
        if r.status_code == 404:  # no version yet: anything is compatible
            return True
        r.raise_for_status()
        return bool(r.json().get("is_compatible"))

    def schema_by_id(self, schema_id: int) -> Any:
        """Parsed writer schema for ``schema_id`` (cached); KeyError when unknown."""
        if schema_id not in self._by_id:
            r = self.http.get(f"{self.url}/schemas/ids/{schema_id}")
            if r.status_code == 404:
                raise KeyError(schema_id)
            r.raise_for_status()
            self._by_id[schema_id] = fastavro.parse_schema(json.loads(r.json()["schema"]))
        return self._by_id[schema_id]

    def close(self) -> None:
        self.http.close()


class IncompatibleSchemaError(ValueError):
    """The registry rejected a schema under the subject's compatibility rule."""


def register_contract(client: RegistryClient, topic: str) -> int:
    """Register the repo's contract under ``<topic>-value`` with BACKWARD compatibility."""
    subj = subject(topic)
    client.set_compatibility(subj, "BACKWARD")
    return client.register(subj, schema_json())


class DlqReason(StrEnum):
    """Why a record went to the DLQ; the `clickguard.error.reason` header and dlq_events.reason."""

    NOT_WIRE_FORMAT = "not_wire_format"  # not Confluent-framed (no magic byte, too short)
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # the registry does not know the schema id
    AVRO_DECODE_ERROR = "avro_decode_error"  # framed, known schema, but the body is corrupt
    MISSING_REQUIRED = "missing_required"  # a required field absent or empty
    OUT_OF_RANGE = "out_of_range"  # a value outside its domain (price < 0, far-future time)
    UNSTORABLE = "unstorable"  # valid Avro that PostgreSQL cannot store (NUL, oversize, ...)


# Bounds of what the events table (and the indexes over its values) can store; see
# docs/streaming.md "Poison records". Violations are rejected, never silently altered.
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)  # older clocks are bogus (and far from any watermark)
KEY_MAX_BYTES = 1000  # event_id and category are btree keys (row limit ~2,700 bytes)
DEFAULT_MAX_STRING_BYTES = 32_768
STRING_FIELDS = ("event_id", "source", "event_type", "category", "page", "referrer")
INT_BOUNDS = {  # the column types of events (0001_stream_core.sql)
    "session_id": (0, 2**63 - 1),  # bigint, and ids are never negative
    "user_id": (-(2**63), 2**63 - 1),  # bigint
    "item_id": (-(2**63), 2**63 - 1),  # bigint
    "quantity": (1, 10_000),  # integer; the business bound is far tighter
}
PRICE_MAX = 1_000_000  # numeric(12, 2) holds < 1e10; the business bound is far tighter


def storable_problem(
    event: dict[str, Any], max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
) -> str | None:
    """Why PostgreSQL could not store ``event`` as text/numbers, or None.

    Checked before the business rules so that a value the database would choke on is always
    named ``unstorable``. PostgreSQL text cannot hold U+0000; lone surrogates cannot be encoded
    as UTF-8 at all. The detail never repeats the value (it may itself be unstorable).
    """
    for name in STRING_FIELDS:
        value = event.get(name)
        if value is None or not isinstance(value, str):
            continue
        nul = value.find("\x00")
        if nul >= 0:
            return f"{name} contains U+0000 (NUL) at character {nul}"
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return f"{name} is not encodable as UTF-8 ({exc.reason} at character {exc.start})"
        limit = KEY_MAX_BYTES if name in ("event_id", "category") else max_string_bytes
        if size > limit:
            return f"{name} is {size} bytes long, more than {limit}"
    return None


def validate(
    event: dict[str, Any],
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
) -> tuple[DlqReason, str] | None:
    """Business validation of a decoded event; (reason, detail) or None when valid.

    The future bound keeps a bogus clock from pushing the event-time watermark ahead.
    """
    problem = storable_problem(event, max_string_bytes)
    if problem:
        return DlqReason.UNSTORABLE, problem
    for name in ("event_id", "source"):
        if not event.get(name):
            return DlqReason.MISSING_REQUIRED, f"{name} is empty"
    for name in ("event_ts", "ingest_ts", "session_id", "event_type"):
        if event.get(name) is None:
            return DlqReason.MISSING_REQUIRED, f"{name} is missing"
    for name, (lo, hi) in INT_BOUNDS.items():
        value = event.get(name)
        if value is not None and not (lo <= value <= hi):
            return DlqReason.OUT_OF_RANGE, f"{name} {value} outside [{lo}, {hi}]"
    price, quantity = event.get("price"), event.get("quantity")
    if price is not None and not (0 <= price < PRICE_MAX):  # also false for NaN
        return DlqReason.OUT_OF_RANGE, f"price {price} outside [0, 1e6)"
    if event["event_type"] == "purchase" and (price is None or quantity is None):
        return DlqReason.MISSING_REQUIRED, "purchase without price or quantity"
    now = now or datetime.now(UTC)
    for name in ("event_ts", "ingest_ts"):
        ts = _as_datetime(event[name])
        if ts > now + max_future:
            return DlqReason.OUT_OF_RANGE, f"{name} {ts.isoformat()} is in the future"
        if ts < TS_MIN:
            return DlqReason.OUT_OF_RANGE, f"{name} {ts.isoformat()} before 2000"
    return None


def pg_text(value: str | None, limit: int = 2000) -> str | None:
    """``value`` made safe for a text column/header that only informs (DLQ detail, event_id):
    NUL and unencodable characters escaped, length capped. Never used on event data."""
    if value is None:
        return None
    out = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return out if len(out) <= limit else out[:limit] + "…"


def _as_datetime(value: datetime | int) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(value / 1000, UTC)
