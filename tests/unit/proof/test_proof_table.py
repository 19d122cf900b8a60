"""The generated proof table quotes the result files, drops invalid runs and catches hand edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clickguard.settings import REPO_ROOT
from clickguard_proof import proof_table as pt

PROV = {
    "command": "clickguard bench x --rate 5",
    "generated_at": "2026-12-01T12:00:00+00:00",
    "machine": {"nproc": 2, "ram_gb": 23.5, "cpu": "Intel(R) Xeon(R) Processor"},
    "load_avg_start": [1.5, 1.0, 1.0],
    "load_avg_end": [2.5, 2.0, 1.0],
}

FIXTURES: dict[str, dict[str, Any]] = {
    "bench-producer": {
        "provenance": PROV, "records_per_phase": 1000, "avg_record_bytes": 99.3,
        "failed_broker": "kafka-1",
        "phases": [
            {"name": "healthy", "ratio_ours_to_kcat": 0.77,
             "ours": {"throughput_eps": 250000.0, "failed": 0, "exact": True}},
            {"name": "broker_sigkilled", "fault": "kill kafka-1",
             "ours": {"throughput_eps": 100000.0, "failed": 0, "exact": True,
                      "latency_ms": {"p99": 8034.0}}},
            {"name": "broker_sigkilled_5000_per_s", "fault": "kill kafka-1", "rate": 5000.0,
             "ours": {"throughput_eps": 4990.0, "failed": 0, "exact": True,
                      "latency_ms": {"p99": 1912.0}}},
        ],
    },
    "bench-capacity": {
        "provenance": PROV,
        "data": {"step_s": 30.0, "max_p95_ms": 2000.0, "highest_sustainable_eps": 10000,
                 "whole_stack": True, "steps": [
                     {"target_eps": 10000, "sustainable": True, "e2e_p95_ms": 1172.2,
                      "drain_eps": 21000.0, "why_not": []},
                     {"target_eps": 12500, "sustainable": False, "e2e_p95_ms": 1742.8,
                      "drain_eps": 8538.3, "why_not": ["lag grew 1043.7 records/s"]},
                 ]},
    },
    "bench-latency": {
        "provenance": PROV, "passed": True,
        "data": {"rate": 5000, "minutes": 5.0, "idle_s": 30.0, "acknowledged": 1500250,
                 "stored": 1500250, "failed": 0, "complete": True, "partial_stack": False,
                 "slo": {"stages": {"end_to_end": {"p50": 566.6, "p95": 949.3, "p99": 1233.9}}}},
    },
    "bench-cpu": {
        "provenance": PROV,
        "data": {"step_s": 60.0, "prewarm_s": 90.0, "verdict": {"idle_le_5pct": False},
                 "steps": [{"rate": 0, "cores": 2, "stack_cpu_pct_machine": 9.66,
                            "stack_rss_mb_max": 3824.9},
                           {"rate": 1000, "cores": 2, "stack_cpu_pct_machine": 47.56,
                            "stack_rss_mb_max": 3924.6}]},
    },
    "chaos-all": {
        "provenance": PROV,
        "data": {"config": {"rate": 1000.0, "kills": 5}, "scenarios": [
            {"scenario": "streaming-kill", "skipped": None, "rto_first_event_s": 3.69,
             "takeover_p50_s": 5.519, "takeover_max_s": 10.866, "fenced_commits": None,
             "ok": True, "reconciliation": {"acked": 192570, "lost": 0, "duplicated": 0,
                                            "extra": 0}},
            {"scenario": "api", "skipped": None, "rto_first_event_s": 0.546,
             "rto_service_s": 1.56, "ok": True,
             "reconciliation": {"acked": 57780, "lost": 1, "duplicated": 0, "extra": 0}},
            {"scenario": "registry", "skipped": "no registry"},
        ]},
    },
    "slo": {
        "provenance": PROV,
        "data": {"events": 29995, "window_column": "ingest_ts", "stages": {
            "produce_to_kafka": {"p50": 20.0}, "kafka_to_spark": {"p50": 958.1},
            "spark_to_db": {"p50": 1242.3}, "end_to_end": {"p95": 3206.4, "p99": 3441.0}}},
    },
    "fuzz-stream": {
        "command": "clickguard fuzz-stream --records 10", "machine": {"cpus": 2, "memory_gb": 1.0,
                                                                      "load_avg_1_5_15": [16.6]},
        "generated": {"valid": 6, "strings": 4}, "ok": True, "stream_never_stopped": True,
        "fates": {"dlq:unstorable (isolated by the sink)": 1},
        "ledger": {"stored": 6, "dlq": 3, "late": 1, "duplicates": 0, "batches": 2,
                   "unbalanced_batches": 0},
        "batch_duration": {"with an isolated record": {"p50_s": 13.0},
                           "without": {"p50_s": 7.3}},
    },
    "bench-api": {
        "provenance": PROV,
        "table": [{"target": "api", "endpoint": "ALL", "req/s": 426.5, "p50 ms": 80.0,
                   "p95 ms": 200.0, "p99 ms": 430.0, "failures": 0},
                  {"target": "baseline", "endpoint": "ALL", "req/s": 718.0, "p99 ms": 170.0}],
        "data": {"users": 50, "duration_s": 30, "offered_rps": 1250.0, "api_workers": 2,
                 "cache_ttl_s": 1.0, "data": {"events_estimate": 2752750, "anomalies": 104045},
                 "cache_off": {"rps": 146.0, "p95_ms": 900.0, "p99_ms": 1200.0}},
    },
    "dagster_daily_sessions": {
        "machine": {"cpus": 2, "memory_gb": 23.5, "measured_at": "2026-11-26T07:18:46+00:00"},
        "events": 1000000, "days": 3, "spark_master": "local[2]",
        "runs": [{"run": "cold", "seconds": 54.6, "events_per_s": 18315},
                 {"run": "warm", "seconds": 18.0, "events_per_s": 55532}],
    },
    "bench-dashboard": {
        "provenance": PROV,
        "table": [{"condition": "no browser on the dashboard"},
                  {"condition": "1 browser on Live", "p99 − off, 95 % CI ms": "+2.7 [-3.1, +9.6]"},
                  {"condition": "no browser; the Live page's API calls every refresh",
                   "p99 − off, 95 % CI ms": "+1.1 [-2.0, +4.0]"},
                  {"condition": "no browser; a Streamlit session on Live that renders nothing",
                   "p99 − off, 95 % CI ms": "-0.5 [-3.5, +2.5]"}],
        "data": {"watch_s": 60.0, "refresh_s": 5.0, "rounds": 3,
                 "conditions": {
                     "off": {"p99_ms": 20.86, "dashboard_cpu_pct": 0.23,
                             "dashboard_rss_mb_max": 199.7},
                     "on": {"p99_ms": 23.57, "dashboard_cpu_pct": 1.88,
                            "dashboard_rss_mb_max": 199.9}}},
    },
}
# what each extractor must quote from its fixture: (in figure, in ours)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "bench-producer": (["1,000 records per phase"],
                       ["pre-encoded 250,000 ev/s = 0.77× kcat", "delivery p99 8,034 ms",
                        "broker SIGKILLed while paced at 5,000/s 4,990 ev/s, delivery p99 1,912 ms",
                        "0 failed, exact in every phase"]),
    "bench-capacity": (["10,000/12,500 ev/s", "whole stack up"],
                       ["**10,000 ev/s** highest sustainable (e2e p95 1,172 ms)",
                        "12,500: not (lag grew 1043.7 records/s)",
                        "not a sustained rate) up to 21,000 ev/s, at the 10,000 step"]),
    "bench-latency": (["5,000 ev/s for 5 min", "after 30 s idle"],
                      ["**p95 949 ms, p99 1,234 ms** (targets met)"]),
    "bench-cpu": (["0 / 1,000 ev/s", "90 s prewarm"],
                  ["9.7 / 47.6 % of the 2 cores", "RSS 3,825 / 3,925 MB", "idle_le_5pct missed"]),
    "chaos-all": (["3 scenarios at 1,000 ev/s"],
                  ["lost 1, duplicated 0, extra 0 of 57,780–192,570",
                   "streaming-kill 3.7 s (takeover p50 5.52 s, max 10.87 s over 5 kills)",
                   "api 0.5 s (serving again 1.6 s after its restart)",
                   "registry skipped (no registry)"]),
    "slo": (["29,995 events", "by ingest_ts"],
            ["produce→Kafka 20 ms", "Kafka→Spark 958 ms", "e2e p95 3,206 ms, p99 3,441 ms"]),
    "fuzz-stream": (["10 generated records", "load 1/5/15 min at the end 16.6"],
                    ["every record accounted exactly once", "6 stored, 3 DLQ (1 isolated",
                     "never stopped", "13 s with an isolated record vs 7.3 s"]),
    "bench-api": (["1 s response cache ON", "2,752,750 events", "offered 1,250 req/s"],
                  ["426 req/s", "p99 430 ms", "baseline in the same run 718 req/s",
                   "cache off: 146 req/s, p95 900 ms, p99 1,200 ms"]),
    "dagster_daily_sessions": (["1,000,000 events over 3 days", "2026-11-26 07:18 UTC"],
                               ["cold 54.6 s", "warm 18 s"]),
    "bench-dashboard": (["3 round(s) of 60 s without a browser"],
                        ["dashboard CPU 1.9 % of the cores", "RSS max 200 MB",
                         "p99 20.9 → 23.6 ms (difference +2.7 [-3.1, +9.6], bootstrap 95 %)",
                         "the Live page's API calls alone, no browser: +1.1 [-2.0, +4.0]",
                         "a Live session without a browser: -0.5 [-3.5, +2.5]"]),
}


def test_every_kind_has_a_fixture() -> None:
    assert set(FIXTURES) == set(pt.KINDS) == set(EXPECTED)


@pytest.mark.parametrize("kind", sorted(pt.KINDS))
def test_extractor_quotes_the_json(kind: str) -> None:
    figure, ours = pt.KINDS[kind][0](FIXTURES[kind])
    in_figure, in_ours = EXPECTED[kind]
    for text in in_figure:
        assert text in figure, (text, figure)
    for text in in_ours:
        assert text in ours, (text, ours)


def test_conditions_carry_date_machine_and_load() -> None:
    figure, _ = pt.bench_latency(FIXTURES["bench-latency"])
    assert "2026-12-01 12:00 UTC" in figure
    assert "2 cores (Intel Xeon), 23.5 GB" in figure
    assert "load 1.5 at the start, 2.5 at the end" in figure


def test_api_without_cache_off_figure_says_so() -> None:
    doc = json.loads(json.dumps(FIXTURES["bench-api"]))
    del doc["data"]["cache_off"]
    _, ours = pt.bench_api(doc)
    assert "cache-off figure: not in this result" in ours


def _write(folder: Path, docs: dict[str, dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, doc in docs.items():
        (folder / f"{kind}.json").write_text(json.dumps(doc))


def test_rows_source_invalid_and_missing(tmp_path: Path) -> None:
    results = tmp_path / "docs" / "results"
    invalid = {**FIXTURES["chaos-all"], "valid": False,
               "invalid_reason": "the API kill left the workers serving"}
    no_command = {k: v for k, v in FIXTURES["slo"].items() if k != "provenance"}
    _write(results, {"bench-latency": FIXTURES["bench-latency"], "chaos-all": invalid,
                     "slo": no_command, "demo": {"name": "demo"}})
    rows, notes = pt.build_rows(results, tmp_path)
    assert [r.kind for r in rows] == ["bench-latency", "slo"]
    assert rows[0].source == ("`clickguard bench x --rate 5` → "
                              "[bench-latency](docs/results/bench-latency.md)")
    assert rows[0].original == "p95 13,169 ms from 4 samples"
    assert rows[1].source.startswith("command not recorded → [slo]")
    assert any("dropped `chaos-all` (run marked invalid): the API kill left the workers "
               "serving" in n for n in notes)
    assert any("no result" in n and "`bench-cpu`" in n for n in notes)
    assert any("`demo.json`" in n for n in notes)


def test_marker_replacement_keeps_the_rest() -> None:
    text = f"intro\n{pt.START}\nold | table\n{pt.END}\noutro\n"
    block = pt.render([pt.Row("k", "a|b", "1", "2", "s")], ["a note"])
    out = pt.replace_table(text, block)
    assert out.startswith(f"intro\n{pt.START}\n") and out.endswith(f"{pt.END}\noutro\n")
    assert "old | table" not in out
    assert "| a\\|b | 1 | 2 | s |" in out and "- a note" in out
    assert pt.replace_table(out, block) == out
    with pytest.raises(ValueError):
        pt.replace_table("no markers", block)


def test_cli_writes_then_check_catches_a_hand_edit(tmp_path: Path) -> None:
    results = tmp_path / "docs" / "results"
    _write(results, {"slo": FIXTURES["slo"]})
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{pt.START}\n{pt.END}\n")
    args = ["table", "--readme", str(readme), "--results", str(results)]
    runner = CliRunner()
    assert runner.invoke(pt.proof, [*args, "--check"]).exit_code == 1
    assert runner.invoke(pt.proof, args).exit_code == 0
    assert "e2e p95 3,206 ms" in readme.read_text()
    assert runner.invoke(pt.proof, [*args, "--check"]).exit_code == 0
    readme.write_text(readme.read_text().replace("3,206", "2,000"))
    assert runner.invoke(pt.proof, [*args, "--check"]).exit_code == 1


def test_a_folder_without_results_leaves_the_readme_alone(tmp_path: Path) -> None:
    """`--results` pointing at the wrong folder emptied the README's table and exited 0."""
    readme = tmp_path / "README.md"
    before = f"# x\n{pt.START}\n| a row |\n{pt.END}\n"
    readme.write_text(before)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "other.json").write_text("{}")
    runner = CliRunner()
    for folder, says in ((tmp_path / "empty", "no result file of the table in"),
                         (tmp_path / "missing", "does not exist")):
        res = runner.invoke(pt.proof, ["table", "--readme", str(readme), "--results", str(folder)])
        assert res.exit_code != 0 and says in res.output, res.output
    assert readme.read_text() == before


def test_real_results_give_a_row_per_kind_present() -> None:
    results = REPO_ROOT / "docs" / "results"
    present = {k for k in pt.KINDS if (results / f"{k}.json").exists()}
    rows, notes = pt.build_rows(results, REPO_ROOT)
    assert not [n for n in notes if n.startswith("dropped") and "invalid" not in n], notes
    invalid = {k for k in present
               if json.loads((results / f"{k}.json").read_text()).get("valid") is False}
    assert {r.kind for r in rows} == present - invalid
    assert present, "no result files in docs/results"


def test_readme_table_is_the_generated_one() -> None:
    """A hand edit of the README's table (or a new result without regenerating) fails here."""
    current, new = pt.generate(REPO_ROOT / "README.md", REPO_ROOT / "docs" / "results")
    assert current == new, "run `clickguard proof table`"
