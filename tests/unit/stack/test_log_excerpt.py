"""What `stack up` quotes from a node's log when the node died: the cause, not the last frames."""

from __future__ import annotations

from pathlib import Path

from clickguard_stack.manager import log_excerpt

FRAMES = "".join(f"\tat org.apache.kafka.Frame{i}.run(Frame{i}.java:{i})\n" for i in range(20))
# the project's CI broker of 2026-12-06 11:20 (128 MiB cleaner buffer in a 256 MiB heap)
OOM = (
    "2026-12-06T11:20:40.191Z kafka-1-metadata-loader-event-handler ERROR Encountered fatal "
    "fault: Error starting LogManager\n"
    "java.lang.OutOfMemoryError: Java heap space\n" + FRAMES + "\n"
)


def test_a_jvm_that_died_of_oom_is_quoted_by_its_error_not_its_frames(tmp_path: Path) -> None:
    log = tmp_path / "kafka-1.log"
    log.write_text("[2026-12-06 11:20:39] INFO starting (kafka.server.KafkaRaftServer)\n" + OOM)
    said = log_excerpt(log)
    assert said[-2].endswith("ERROR Encountered fatal fault: Error starting LogManager")
    assert said[-1] == "java.lang.OutOfMemoryError: Java heap space"
    assert not any(line.lstrip().startswith("at ") for line in said)


def test_only_this_start_is_quoted_and_its_first_errors_come_first(tmp_path: Path) -> None:
    log = tmp_path / "kafka-1.log"
    log.write_text("[t0] ERROR an earlier run's failure\n")
    since = log.stat().st_size
    with log.open("a") as f:
        f.write("[t1] INFO registerBroker: event failed with NotControllerException\n"
                "[t2] ERROR [BrokerLifecycleManager id=1] Shutting down because we were unable "
                "to register with the controller quorum.\n"
                + "".join(f"[t{i}] WARN shutting down, step {i}\n" for i in range(3, 13)))
    said = log_excerpt(log, since)
    assert not any("earlier run" in line for line in said)
    assert "unable to register with the controller quorum" in said[0]  # INFO is not an error
    assert said[1] == "..." and said[-1] == "[t12] WARN shutting down, step 12"
    assert len(said) == 2 + 4
    assert log_excerpt(tmp_path / "absent.log") == []
