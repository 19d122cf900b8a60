"""Consumer position and lag for /stream from the batch ledger's ``offsets`` json."""

from __future__ import annotations

import pytest

from api.routes.stream import consumer_lag, consumer_positions, next_offsets

TOPIC = "km.events.raw.v1"


@pytest.mark.parametrize(
    ("offsets", "expected"),
    [
        ({"0": [5, 9], "3": [100, 100]}, {"0": 10, "3": 101}),  # streaming sink: [first, last]
        ({TOPIC: {"0": 10, "1": 20}}, {"0": 10, "1": 20}),  # Spark endOffset: next to read
        ({"end": {TOPIC: {"0": 5}}}, {"0": 5}),
        ({"endOffset": {TOPIC: {"2": 7}}}, {"2": 7}),
        ({TOPIC: {"0": [3, 9]}}, {"0": 10}),
        ({"other.topic": {"0": 1}}, None),
        ({}, None),  # an empty batch
        (None, None),
        ([1, 2], None),
        ({TOPIC: "garbage"}, None),
        ({TOPIC: {"0": "x", "1": 4}}, {"1": 4}),
        ({"0": True}, None),
    ],
)
def test_next_offsets(offsets: object, expected: dict[str, int] | None) -> None:
    assert next_offsets(offsets, TOPIC) == expected


def test_positions_merge_recent_batches_and_lag() -> None:
    rows = [{"0": [50, 59]}, {}, {"1": [7, 7]}, {"0": [40, 49], "2": [0, 3]}]
    positions = consumer_positions(rows, TOPIC)
    assert positions == {"0": 60, "1": 8, "2": 4}
    assert consumer_lag({0: 65, 1: 8, 2: 3, 3: 12}, positions) == {
        "0": 5, "1": 0, "2": 0, "3": 12}
    assert consumer_positions([{}, None], TOPIC) is None
