"""Reading the newest ledger row's offsets json for the consumer lag of /stream."""

from __future__ import annotations

import pytest

from api.routes.stream import ledger_offsets

TOPIC = "km.events.raw.v1"


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ({TOPIC: {"0": 10, "1": 20}}, {"0": 10, "1": 20}),  # Spark endOffset
        ({"end": {TOPIC: {"0": 5}}}, {"0": 5}),
        ({"endOffset": {TOPIC: {"2": 7}}}, {"2": 7}),
        ({TOPIC: {"0": [3, 9]}}, {"0": 9}),  # [start, end] ranges
        ({"other.topic": {"0": 1}}, None),
        ({}, None),
        (None, None),
        ([1, 2], None),
        ({TOPIC: "garbage"}, None),
        ({TOPIC: {"0": "x", "1": 4}}, {"1": 4}),
    ],
)
def test_ledger_offsets(offsets: object, expected: dict[str, int] | None) -> None:
    assert ledger_offsets(offsets, TOPIC) == expected
