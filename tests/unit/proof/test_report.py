"""The shared report writer produces well-formed JSON, Markdown and PNG (no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from clickguard_proof.report import Report, machine_info, md_table


def test_writes_json_md_png_with_machine_and_date(tmp_path: Path) -> None:
    def draw(fig) -> None:
        fig.add_subplot().plot([1, 2, 3], [3, 1, 2])

    rows = [{"scenario": "a|b", "lost": 0, "rto s": 12.345, "ok": True, "p99": None}]
    report = Report(
        name="demo-test", title="Test report", rows=rows, notes=["method: exact"],
        data={"value": np.float64(1.5), "when": datetime(2020, 1, 2, tzinfo=UTC),
              "arr": np.arange(3)},
        plot=draw, passed=True,
    )
    paths = report.write(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == [
        "demo-test.json", "demo-test.md", "demo-test.png",
    ]
    doc = json.loads(paths["json"].read_text())
    assert doc["data"] == {"value": 1.5, "when": "2020-01-02T00:00:00+00:00", "arr": [0, 1, 2]}
    assert doc["passed"] is True
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["ram_gb"] > 0
    assert doc["machine"]["kernel"].startswith("Linux")
    assert datetime.fromisoformat(doc["generated_at"]).tzinfo is not None
    md = paths["md"].read_text()
    assert md.startswith("# Test report\n")
    assert "**Verdict: PASS**" in md
    assert "| a\\|b | 0 | 12.35 | yes | – |" in md
    assert "![Test report](demo-test.png)" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_md_table_formats_numbers() -> None:
    text = md_table([{"a": 1234567, "b": 15000.4, "c": 0.123}])
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 1,234,567 | 15,000 | 0.12 |"]
    assert md_table([]) == "_no rows_\n"


def test_machine_info_keys() -> None:
    info = machine_info()
    assert {"nproc", "ram_gb", "kernel", "cpu"} <= set(info)


def test_index_quotes_latest_figures_beside_the_original(tmp_path: Path) -> None:
    from clickguard_proof.summary import build_index

    Report(name="bench-capacity", title="cap", rows=[{"a": 1}],
           data={"highest_sustainable_eps": 12000, "steps": []}).write(tmp_path)
    scenario = {"scenario": "postgres", "skipped": None, "rto_first_event_s": 12.5,
                "rto_lag_s": 20.0, "reconciliation": {"lost": 0, "duplicated": 0, "extra": 0,
                                                      "acked": 5000}}
    Report(name="chaos-postgres", title="chaos", data={"scenarios": [scenario]}).write(tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert text == build_index(tmp_path)
    assert "| highest sustainable events/s | 12,000 | 15,000 (failing at 20,000) |" in text
    assert ("| chaos postgres | RTO 12.5 s (first event) / 20.0 s (lag normal); lost 0, "
            "duplicated 0, extra 0 of 5,000 acked |") in text
    assert "| API (Locust) | not measured |" in text
