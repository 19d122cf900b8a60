"""`clickguard bench scaling`'s parsing: deployments and the sink's per-batch log lines."""

from __future__ import annotations

from pathlib import Path

from clickguard_proof import bench_scaling
from clickguard_proof.bench_scaling import batch_split, deployments

LOG = """\
2026-12-02 13:19:01,866 INFO streaming_job.sink[d0]: batch 893: input=773 stored=773 dlq=0 late=0 dup=0 anomalies=0 (689 ms, of which Spark collect 605 ms, decode 40 ms)
2026-12-02 13:19:30,479 INFO streaming_job.sink[d1]: batch 894: input=1000 stored=990 dlq=5 late=1 dup=4 anomalies=0 (2000 ms, of which Spark collect 500 ms, decode 700 ms)
2026-12-02 13:19:31,000 INFO streaming_job.lease[d1]: took the lease
2026-12-02 13:19:40,142 INFO streaming_job.sink[d1]: batch 895: input=3000 stored=3000 dlq=0 late=0 dup=0 anomalies=1 (3000 ms, of which Spark stage 1000 ms, decode 1000 ms; 6 tasks)
"""  # noqa: E501


def test_deployments_name_local_mode_and_worker_counts() -> None:
    assert deployments("local[2], 1,2,") == ["local[2]", "cluster-1", "cluster-2"]


def test_batch_split_sums_the_batches_logged_since_the_start(tmp_path: Path) -> None:
    log = tmp_path / "streaming.log"
    log.write_text(LOG)
    split = batch_split(log, len(LOG.splitlines(keepends=True)[0]))  # batch 893 is before
    assert split == {
        "batches": 2, "rows": 4000, "batch_ms_total": 5000, "spark_collect_ms": 1500,
        "driver_decode_ms": 1700, "driver_ms": 3500, "driver_share": 0.7,
        "rows_per_driver_s": round(4000 / 3.5, 1), "rows_per_collect_s": round(4000 / 1.5, 1),
    }
    assert batch_split(log, len(LOG))["batches"] == 0
    assert batch_split(log, len(LOG) + 1)["batches"] == 3  # rotated since: read whole


def test_the_report_names_the_topic_partitions_the_run_had() -> None:
    run = {"load_before": [1.0], "load_after": [2.0],
           "split": {"driver_share": 0.2, "rows_per_collect_s": 1.0, "rows_per_driver_s": 2.0}}
    result = {"backlog": 1000, "machine": {}, "deployments": [{
        "deployment": "cluster-2", "runs": [run], "eps_median": 1.0, "eps_min": 1.0,
        "eps_max": 1.0}], "config": {"stream_decode": "executors", "raw_partitions": 12}}
    assert "raw topic (12 partitions)" in bench_scaling.render(result)
    del result["config"]  # a result file from before the count was recorded: the default then
    assert "raw topic (6 partitions)" in bench_scaling.render(result)
