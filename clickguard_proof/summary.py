"""The closing table: our latest measured figures beside the original's, from the result files.

``write_index(results_dir)`` reads whatever proof results exist (chaos-*.json, slo.json,
bench-api.json, bench-capacity.json, bench-producer.json — the last one also from the producer
bench's default folder ``results/bench-producer/``) and writes ``<results_dir>/README.md``. Every
proof command calls it after writing its own files, so the index always quotes the latest runs; a
figure never measured shows as "not measured".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clickguard.settings import REPO_ROOT

NOT_MEASURED = "not measured"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _n(v: float | None, unit: str = "") -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:,.1f}{unit}"


def _producer_rows(results_dir: Path) -> list[list[str]]:
    doc = None
    for p in (results_dir / "bench-producer.json",
              REPO_ROOT / "results" / "bench-producer" / "bench-producer.json"):
        doc = _load(p)
        if doc:
            break
    original = {"healthy": "4,819 msg/s", "broker_sigkilled": "4,690 msg/s (one broker down)",
                "broker_stopped": "4,690 msg/s (one broker down)"}
    if not doc:
        return [["producer events/s", NOT_MEASURED, original["healthy"], "bench producer"]]
    rows = []
    when = (doc.get("machine") or {}).get("measured_at", "?")
    for ph in doc.get("phases", []):
        if ph["name"] not in original:
            continue
        o = ph["ours"]
        ratio = ph.get("ratio_ours_to_kcat")
        rows.append([
            f"producer {ph['name'].replace('_', ' ')} (acks=all)",
            f"{_n(o['throughput_eps'])} ev/s, {o['failed']} failed, p99 "
            f"{_n(o.get('latency_ms', {}).get('p99'))} ms"
            + (f", {ratio}× kcat" if ratio else ""),
            original[ph["name"]], f"bench-producer ({when})",
        ])
    return rows


def build_index(results_dir: Path) -> str:
    rows: list[list[str]] = [*_producer_rows(results_dir)]
    chaos_docs = sorted(results_dir.glob("chaos-*.json"))
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in chaos_docs:  # latest result per scenario across chaos-*.json files
        doc = _load(path) or {}
        for sc in (doc.get("data") or {}).get("scenarios", []):
            prev = seen.get(sc["scenario"])
            if prev is None or doc.get("generated_at", "") >= prev[0]:
                seen[sc["scenario"]] = (doc.get("generated_at", ""), sc)
    for name, (when, sc) in seen.items():
        rec = sc.get("reconciliation") or {}
        ours = (f"skipped: {sc['skipped']}" if sc.get("skipped") else
                f"RTO {_n(sc.get('rto_first_event_s'), ' s')} (first event) / "
                f"{_n(sc.get('rto_lag_s'), ' s')} (lag normal)"
                + (f", API answers again after {_n(sc['rto_service_s'], ' s')}"
                   if sc.get("rto_service_s") is not None else "")
                + f"; lost {rec.get('lost')}, "
                f"duplicated {rec.get('duplicated')}, extra {rec.get('extra')} of "
                f"{rec.get('acked', 0):,} acked")
        rows.append([f"chaos {name}", ours, "≈ 62 s RTO, RPO 0 (no reconciliation)",
                     f"chaos ({when[:16]})"])
    if not seen:
        rows.append(["chaos RTO/RPO", NOT_MEASURED, "≈ 62 s RTO, RPO 0", "chaos"])
    slo = _load(results_dir / "slo.json")
    if slo:
        st = slo["data"]["stages"]
        rows.append([
            f"SLO p50 per stage ({slo['data']['events']:,} events)",
            f"produce→Kafka {_n(st['produce_to_kafka']['p50'])} ms, Kafka→Spark "
            f"{_n(st['kafka_to_spark']['p50'])} ms, Spark→DB {_n(st['spark_to_db']['p50'])} ms",
            "828 / 2,648 / 6,586 ms (4 samples)", f"slo-report ({slo['generated_at'][:16]})",
        ])
        rows.append([
            "SLO end-to-end p95 / p99", f"{_n(st['end_to_end']['p95'])} / "
            f"{_n(st['end_to_end']['p99'])} ms", "13,169 ms (p95, 4 samples)",
            f"slo-report ({slo['generated_at'][:16]})",
        ])
    else:
        rows.append(["SLO per-stage latency", NOT_MEASURED, "p95 e2e 13,169 ms", "slo-report"])
    api = _load(results_dir / "bench-api.json")
    if api:
        tot = next((r for r in api["table"] if r["target"] == "api" and r["endpoint"] == "ALL"),
                   None)
        rows.append([
            "API (Locust)", f"{_n(tot['req/s'])} req/s, p95 {_n(tot['p95 ms'])} ms, p99 "
            f"{_n(tot['p99 ms'])} ms, {tot['failures']} failures" if tot else NOT_MEASURED,
            "237.7 req/s at 200 users, p95 420 ms, p99 580 ms",
            f"bench api ({api['generated_at'][:16]})",
        ])
    else:
        rows.append(["API (Locust)", NOT_MEASURED, "237.7 req/s, p99 580 ms", "bench api"])
    cap = _load(results_dir / "bench-capacity.json")
    if cap:
        best = cap["data"]["highest_sustainable_eps"]
        rows.append(["highest sustainable events/s",
                     f"{best:,}" if best else "none of the steps tried",
                     "15,000 (failing at 20,000)",
                     f"bench capacity ({cap['generated_at'][:16]})"])
    else:
        rows.append(["highest sustainable events/s", NOT_MEASURED, "15,000", "bench capacity"])
    lines = [
        "# Results: measured figures beside the original's",
        "",
        "Written by the proof commands (`clickguard chaos`, `slo-report`, `bench producer|api|"
        "capacity`) after each run; every figure links to a dated JSON/Markdown/PNG in this "
        "folder with the machine it was measured on (nproc, RAM, kernel, load average).",
        "",
        "| figure | ours (latest run) | original | source |",
        "|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    return "\n".join(lines)


def write_index(results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "README.md"
    path.write_text(build_index(results_dir))
    return path
