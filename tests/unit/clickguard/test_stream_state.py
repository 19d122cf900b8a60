"""Crash-loop bookkeeping of the streaming supervisor (pure logic of clickguard.stream_state)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clickguard import stream_state
from clickguard.stream_state import FailedRun, StreamRunState

ERR = "InsufficientPrivilege: permission denied for table events"


def failed(advanced: bool | None = False, batch: int | None = 7) -> FailedRun:
    return FailedRun(exit_code=1, error=ERR, batch_id=batch, ledger_advanced=advanced, ran_s=3.0)


def test_threshold_failed_runs_without_progress_make_crash_looping() -> None:
    st = StreamRunState(threshold=3)
    st.record_failure(failed())
    assert (st.state, st.consecutive_failures) == ("restarting", 1)
    st.record_failure(failed())
    assert (st.state, st.consecutive_failures) == ("restarting", 2)
    st.record_failure(failed())
    assert (st.state, st.consecutive_failures, st.restarts) == ("crash-looping", 3, 3)
    assert (st.last_error, st.last_batch_id, st.ledger_advanced) == (ERR, 7, False)
    assert st.summary() == f"3 failed run(s) without progress at batch 7: {ERR}"
    assert st.headline() == f"batch 7 failed 3 times: {ERR}"


def test_a_failed_run_that_advanced_the_ledger_resets_the_count() -> None:
    st = StreamRunState(threshold=2)
    st.record_failure(failed())
    st.record_failure(failed(advanced=True))
    assert (st.state, st.consecutive_failures) == ("running", 0)
    st.record_failure(failed(advanced=None))  # database unreachable: counts as no progress
    assert (st.state, st.consecutive_failures) == ("restarting", 1)


def test_progress_clears_crash_looping_and_keeps_history() -> None:
    st = StreamRunState(threshold=1)
    st.record_failure(failed())
    looping_since = st.since
    assert st.state == "crash-looping"
    assert st.record_progress() is True
    assert (st.state, st.consecutive_failures) == ("running", 0)
    assert st.since >= looping_since
    assert st.record_progress() is False  # already running: nothing changed
    assert len(st.recent_failures) == 1 and st.recent_failures[0]["error"] == ERR


def test_last_error_is_dated_by_the_newest_failed_run() -> None:
    st = StreamRunState(threshold=100)
    assert st.last_error_at is None
    first, second = failed(), failed()
    first.ended_at, second.ended_at = "2026-12-04T10:00:00+00:00", "2026-12-04T10:05:00+00:00"
    st.record_failure(first)
    st.record_failure(second)
    assert st.last_error_at == "2026-12-04T10:05:00+00:00"
    st.record_progress()  # recovered: the error keeps its date
    assert StreamRunState.from_dict(st.to_dict()).last_error_at == "2026-12-04T10:05:00+00:00"


def test_recent_failures_are_bounded() -> None:
    st = StreamRunState(threshold=100)
    for i in range(stream_state.KEEP_FAILURES + 3):
        st.record_failure(failed(batch=i))
    assert [f["batch_id"] for f in st.recent_failures] == list(
        range(3, stream_state.KEEP_FAILURES + 3)
    )


def test_round_trip_through_file_and_unknown_keys(tmp_path: Path) -> None:
    st = StreamRunState(threshold=2)
    st.record_failure(failed())
    stream_state.write_json(tmp_path / stream_state.STATUS_FILE, {**st.to_dict(), "extra": 1})
    back = stream_state.read_status(tmp_path)
    assert back is not None and back.to_dict() == st.to_dict()
    (tmp_path / stream_state.STATUS_FILE).write_text("{half")
    assert stream_state.read_status(tmp_path) is None


def test_effective_state_sees_a_commit_after_the_loop_began() -> None:
    st = StreamRunState(threshold=1)
    st.record_failure(failed())
    since = datetime.fromisoformat(st.since)
    before = stream_state.effective_state(st.to_dict(), since - timedelta(seconds=5))
    assert before is not None and before.state == "crash-looping"
    after = stream_state.effective_state(st.to_dict(), since + timedelta(seconds=1))
    assert after is not None and after.state == "running"
    assert stream_state.effective_state(None, datetime.now(UTC)) is None


@pytest.mark.parametrize(("text", "expected"), [
    (None, None),
    ("", None),
    ("plain words", "plain words"),
    ("Traceback (most recent call last):\n  File x\npsycopg.errors.InsufficientPrivilege: "
     "permission denied for table events\n", "psycopg.errors.InsufficientPrivilege: "
     "permission denied for table events"),
    ("x" * 300, "x" * 199 + "…"),
])
def test_short_error(text: str | None, expected: str | None) -> None:
    assert stream_state.short_error(text) == expected
