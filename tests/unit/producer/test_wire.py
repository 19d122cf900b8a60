"""The table-driven varint equals the plain Avro varint at every size boundary."""

from __future__ import annotations

import io
import random

import fastavro
import pytest

from clickguard_producer.wire import zigzag_varint

BOUNDARIES = [0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, 2**27 - 1, 2**27, -(2**27),
              2**41 - 1, 2**41, -(2**41), 2**55 - 1, 2**55, 2**62, 2**63 - 1, -(2**63)]


def avro_long(n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    return buf.getvalue()


@pytest.mark.parametrize("n", BOUNDARIES)
def test_boundaries(n: int) -> None:
    assert zigzag_varint(n) == avro_long(n)


def test_random_values_of_every_magnitude() -> None:
    rng = random.Random(7)
    for bits in range(1, 64):
        for _ in range(200):
            n = rng.randrange(-(2**bits), 2**bits)
            assert zigzag_varint(n) == avro_long(n), n
