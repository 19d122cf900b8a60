"""Consumer position and lag for /stream from the batch ledger's ``offsets`` json."""

from __future__ import annotations

import datetime as dt

import pytest

from api.routes.stream import active_driver, consumer_lag, consumer_positions, next_offsets

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


def _row(driver: str | None, epoch: int | None, second: int) -> dict[str, object]:
    return {"offsets": {}, "driver": driver, "driver_epoch": epoch,
            "committed_at": dt.datetime(2026, 12, 1, 15, 0, second, tzinfo=dt.UTC)}


def test_active_driver_is_the_lease_holder_with_its_newest_commit() -> None:
    acquired = dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)
    lease = {"holder": "d1:42@h", "epoch": 3, "acquired_at": acquired,
             "expires_at": acquired + dt.timedelta(seconds=10)}
    # the holder took over (epoch 3) but d0's last batches are the newest the ledger has
    recent = [_row("d0:41@h", 2, 9), _row("d1:42@h", 2, 8), _row("d1:42@h", 3, 7)]
    assert active_driver(lease, recent) == {
        "driver": "d1:42@h", "epoch": 3, "source": "lease", "since": acquired,
        "lease_expires_at": acquired + dt.timedelta(seconds=10),
        "last_commit_at": recent[2]["committed_at"],
    }
    assert active_driver(lease, [])["last_commit_at"] is None  # type: ignore[index]


def test_active_driver_without_a_lease_is_the_newest_batchs_driver() -> None:
    recent = [_row("d0:41@h", 2, 9), _row("d1:42@h", 1, 8)]
    assert active_driver(None, recent) == {
        "driver": "d0:41@h", "epoch": 2, "source": "ledger",
        "last_commit_at": recent[0]["committed_at"],
    }
    assert active_driver(None, [_row(None, None, 9)]) is None  # ledger rows before 0008
    assert active_driver(None, []) is None
