"""The event contract: Avro schema, Confluent wire format, and a schema-registry client.

Wire format (Confluent): byte 0 = magic 0, bytes 1-4 = schema id (big-endian), then the Avro
binary body. Readers resolve the writer's schema (by id, from the registry) against the reader
schema in this folder, so producers on an older or newer compatible schema both decode.
"""

from __future__ import annotations

import io
import json
import struct
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
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout, headers={"Content-Type": self.CT})
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
