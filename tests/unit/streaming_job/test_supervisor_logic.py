"""What the supervisor records about a failed run: the job's exit file, else its log, else rc."""

from __future__ import annotations

from pathlib import Path

from clickguard import stream_state
from streaming_job.supervisor import UNKNOWN, error_from_log, failed_run

SPARK_TAIL = """\
2026-11-30 14:00:01 INFO streaming_job.job: query abc started
  File "/x/sink.py", line 330, in commit
psycopg.errors.InsufficientPrivilege: permission denied for table events
2026-11-30 14:00:03 ERROR streaming_job.job: query terminated: [FOREACH_BATCH_USER_FUNCTION_ERROR]
"""


def test_exit_file_wins(tmp_path: Path) -> None:
    stream_state.write_json(tmp_path / stream_state.EXIT_FILE, {
        "exit_code": 1, "error": "InsufficientPrivilege: permission denied for table events",
        "batch_id": 4, "batches_committed": 0,
    })
    run = failed_run(1, 12.34, tmp_path, None, 0, "2026-11-30T14:00:00+00:00",
                     "2026-11-30T14:00:00+00:00")
    assert (run.exit_code, run.batch_id, run.ledger_advanced, run.ran_s) == (1, 4, False, 12.3)
    assert run.error == "InsufficientPrivilege: permission denied for table events"


def test_log_fallback_reads_only_this_run(tmp_path: Path) -> None:
    log = tmp_path / "streaming.log"
    log.write_text("ValueError: from an earlier run\n")  # before this run's offset
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write(SPARK_TAIL)
    run = failed_run(1, 5.0, tmp_path, log, offset, None, "2026-11-30T14:00:02+00:00")
    assert run.ledger_advanced is True  # the ledger was empty before and has a batch now
    assert run.error == (
        "psycopg.errors.InsufficientPrivilege: permission denied for table events"
    )
    # an error-level log record is the fallback when no exception line was written
    second = log.stat().st_size
    with log.open("a") as f:
        f.write("2026-11-30 14:00:09 ERROR streaming_job.job: streaming job failed\n")
    assert error_from_log(log, second) == (
        "2026-11-30 14:00:09 ERROR streaming_job.job: streaming job failed"
    )


def test_killed_without_a_word(tmp_path: Path) -> None:
    log = tmp_path / "streaming.log"
    log.write_text("")
    run = failed_run(-9, 1.0, tmp_path, log, 0, None, None)
    assert (run.error, run.ledger_advanced, run.batch_id) == ("killed by signal 9", False, None)


def test_database_down_trusts_the_jobs_count(tmp_path: Path) -> None:
    stream_state.write_json(tmp_path / stream_state.EXIT_FILE, {
        "exit_code": 1, "error": "OperationalError: connection refused", "batch_id": 9,
        "batches_committed": 2,
    })
    assert failed_run(1, 1.0, tmp_path, None, 0, UNKNOWN, UNKNOWN).ledger_advanced is True
    (tmp_path / stream_state.EXIT_FILE).unlink()
    assert failed_run(1, 1.0, tmp_path, None, 0, None, UNKNOWN).ledger_advanced is None
