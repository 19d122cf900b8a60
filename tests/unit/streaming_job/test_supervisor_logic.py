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


def test_fenced_exit_is_a_restart_not_a_failure() -> None:
    from streaming_job.lease import FENCED_RC
    from streaming_job.supervisor import is_fenced_exit

    assert is_fenced_exit(FENCED_RC)
    assert not is_fenced_exit(1) and not is_fenced_exit(-9) and not is_fenced_exit(0)


def test_only_a_dead_active_drivers_replacement_waits_for_the_takeover() -> None:
    from streaming_job.supervisor import REPLACE_DELAY_S, replace_delay

    # the active died, its successor is taking over: the replacement's JVM waits
    assert replace_delay(2.0, was_active=True, others_alive=True) == REPLACE_DELAY_S
    # the standby died: no takeover under way, replaced at once (else a kill of the active
    # before the replacement is warm is a cold start)
    assert replace_delay(2.0, was_active=False, others_alive=True) == 2.0
    assert replace_delay(2.0, was_active=True, others_alive=False) == 2.0  # the only driver
    assert replace_delay(60.0, was_active=False, others_alive=True) == 60.0  # crash loop backoff


def test_a_driver_that_held_the_lease_counts_as_active_however_it_ended(tmp_path: Path) -> None:
    from streaming_job.supervisor import last_role

    def published(slot: int, **info: object) -> None:
        stream_state.write_json(tmp_path / stream_state.driver_file(slot), info)

    published(0, role="stopped", epoch=3)  # failed with an error: its finally said "stopped"
    published(1, role="active", epoch=4)  # SIGKILLed while active
    published(2, role="standby", epoch=None, warm=True)
    assert [last_role(tmp_path, i) for i in range(4)] == [
        "active", "active", "standby", "starting"]  # slot 3: died before publishing


def test_one_driver_keeps_todays_exit_file_several_get_one_each() -> None:
    from clickguard.settings import Settings
    from streaming_job.supervisor import Slot

    s = Settings()
    assert Slot(0, 1, s).exit_name == stream_state.EXIT_FILE
    assert [Slot(i, 2, s).exit_name for i in range(2)] == ["job-exit-0.json", "job-exit-1.json"]


def test_driver_roles_for_stack_status(tmp_path: Path) -> None:
    import os

    me = os.getpid()
    standby = {"slot": "1", "pid": me, "role": "standby", "warm": True}
    stream_state.write_json(tmp_path / stream_state.driver_file(1), standby)
    stream_state.write_json(tmp_path / stream_state.driver_file(0), {
        "slot": "0", "pid": me, "role": "active", "epoch": 7})
    # a dead driver's file is ignored
    stream_state.write_json(tmp_path / stream_state.driver_file(2), {
        "slot": "2", "pid": 2**22 + 7, "role": "active", "epoch": 3})
    drivers = stream_state.read_drivers(tmp_path)
    # ready to take over, its first background warm-up round not done: not yet what `stack up`
    # waits for
    assert stream_state.drivers_summary(drivers, 2) == (
        f"active d0 pid {me} epoch 7; standby d1 pid {me} ready, warming"
    )
    stream_state.write_json(tmp_path / stream_state.driver_file(1), {**standby, "rewarms": 1})
    drivers = stream_state.read_drivers(tmp_path)
    assert stream_state.standbys_warm(drivers) == 1
    assert stream_state.drivers_summary(drivers, 2) == (
        f"active d0 pid {me} epoch 7; standby d1 pid {me} warm"
    )
    only_active = [d for d in drivers if d["role"] == "active"]
    assert stream_state.drivers_summary(only_active, 2).endswith("no warm standby yet")
    assert stream_state.drivers_summary(only_active, 1) == f"active d0 pid {me} epoch 7"
