"""The ledger's one offsets format and the one rule for position, lag, events/s, freshness."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clickguard import ledger


def test_the_writer_and_the_reader_agree() -> None:
    written = ledger.encode_offsets([(0, 5, 9), (3, 100, 100)])
    assert written == {"0": [5, 9], "3": [100, 100]}
    assert ledger.next_offsets(written) == {0: 10, 3: 101}
    assert ledger.next_offsets('{"1": [0, 4]}') == {1: 5}  # JSON text, as psycopg may hand it


@pytest.mark.parametrize(
    "value",
    [None, {}, [1, 2], "not json", {"km.events.raw.v1": {"0": 10}}, {"0": True}, {"0": [1]},
     {"0": ["a", "b"]}, {"x": [1, 2]}],
)
def test_other_shapes_are_no_progress(value: object) -> None:
    assert ledger.next_offsets(value) == {}


def test_position_is_the_max_over_batches_and_absent_partitions_are_at_zero() -> None:
    # the newest batch need not contain every partition
    positions = ledger.merge_positions([{"0": [10, 19], "1": [5, 7]}, {"0": [0, 9], "2": [0, 3]}])
    assert positions == {0: 20, 1: 8, 2: 4}
    end = {0: 25, 1: 8, 2: 3, 3: 12}
    assert ledger.lag_by_partition(end, positions) == {0: 5, 1: 0, 2: 0, 3: 12}
    assert ledger.total_lag(end, positions) == 17
    assert ledger.total_lag({}, positions) == 0


def test_sql_rows_in_either_shape() -> None:
    assert ledger.positions_from_rows([(0, 10), (1, 3)]) == {0: 10, 1: 3}
    assert ledger.positions_from_rows([{"partition": 2, "next_offset": 7}]) == {2: 7}


def test_rate_and_freshness() -> None:
    assert ledger.rate_from({"input_rows": 600, "batches": 60, "span_s": 60.0}) == 10.0
    assert ledger.rate_from(None) == 0.0
    assert ledger.rate_from((30, 3, 10.0)) == 3.0
    assert ledger.rate_from((0, 0, None)) == 0.0  # psycopg hands NULL over as None
    at = datetime(2026, 1, 1, tzinfo=UTC)
    f = ledger.freshness_from({"last_batch_at": at, "last_event_at": None, "age_s": 12.5})
    assert (f.last_batch_at, f.age_s, f.fresh(15), f.fresh(10)) == (at, 12.5, True, False)
    never = ledger.freshness_from((None, None, None))
    assert never.age_s is None and not never.fresh(10**9)
    assert ledger.freshness_from(None) == never
