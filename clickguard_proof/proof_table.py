"""The README's proof table, generated from the result files so it cannot drift from them.

``clickguard proof table`` reads ``<results_dir>/<kind>.json`` for each kind below, extracts the
headline figures and the conditions they were measured under (date, machine, load, data size,
cache) and rewrites the README between ``<!-- proof-table:start -->`` and
``<!-- proof-table:end -->``; ``--check`` exits 1 when the README differs (a hand edit). A result
marked ``"valid": false`` is dropped with its ``invalid_reason``. The original system's figures are
constants: they were never re-measured here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

START = "<!-- proof-table:start -->"
END = "<!-- proof-table:end -->"
NOT_RECORDED = "command not recorded"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One table row: what was measured (with conditions), ours, the original's, the source."""

    kind: str
    figure: str
    ours: str
    original: str
    source: str


# --- formatting ------------------------------------------------------------------------------


def _n(v: Any, digits: int = 1) -> str:
    """A number for prose: thousands separators, decimals only for small values."""
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _prov(doc: Doc) -> Doc:
    return doc.get("provenance") or {}


def _machine(doc: Doc) -> Doc:
    return _prov(doc).get("machine") or doc.get("machine") or {}


def _date(doc: Doc) -> str:
    when = (_prov(doc).get("generated_at") or doc.get("generated_at")
            or _machine(doc).get("measured_at") or "")
    return f"{when[:10]} {when[11:16]} UTC" if len(when) >= 16 else "date not recorded"


def _load(doc: Doc) -> str:
    """1-min load average at start and end when both are recorded, else the 1/5/15-min averages
    at the end (the 5- and 15-min ones cover most runs)."""
    p = _prov(doc)
    data = doc.get("data") or {}
    start = p.get("load_avg_start") or data.get("load_average_before")
    end = p.get("load_avg_end") or data.get("load_average_after")
    if start and end:
        return f"load {_n(start[0])} at the start, {_n(end[0])} at the end"
    end = end or data.get("load_avg_end") or data.get("load_avg") or \
        _machine(doc).get("load_avg_1_5_15")
    if not end:
        return "load not recorded"
    return "load 1/5/15 min at the end " + " / ".join(_n(x) for x in end)


def _host(doc: Doc) -> str:
    m = _machine(doc)
    cores = m.get("nproc") or m.get("cpus")
    cpu = (m.get("cpu") or "").replace("(R)", "").replace(" Processor", "").strip()
    return (f"{cores} cores ({cpu or 'CPU model not recorded'}), "
            f"{_n(m.get('ram_gb') or m.get('memory_gb'))} GB")


def _conditions(doc: Doc, *extra: str) -> str:
    return "(" + "; ".join([_date(doc), _host(doc), _load(doc), *[e for e in extra if e]]) + ")"


def _command(doc: Doc) -> str:
    return _prov(doc).get("command") or doc.get("command") or NOT_RECORDED


# --- one extractor per result kind: (figure, ours) ----------------------------------------------


def bench_producer(doc: Doc) -> tuple[str, str]:
    """Every phase's events/s; the broker-fault phases with their delivery p99."""
    labels = {"as_users_run_it": "the producer command as users run it",
              "healthy": "pre-encoded", "healthy_2_processes": "the same records from 2 processes",
              "healthy_5000_per_s": "paced at 5,000/s", "broker_sigkilled": "broker SIGKILLed",
              "broker_stopped": "broker stopped"}
    parts, failed, exact = [], 0, True
    for ph in doc.get("phases", []):
        o = ph.get("ours") or {}
        failed += o.get("failed") or 0
        exact = exact and bool(o.get("exact", True))
        label = labels.get(ph["name"], ph["name"])
        if ph["name"].startswith("broker_sigkilled_") and ph.get("rate"):
            label = f"broker SIGKILLed while paced at {_n(ph['rate'])}/s"
        text = f"{label} {_n(o.get('throughput_eps'))} ev/s"
        if ph["name"] == "healthy" and ph.get("ratio_ours_to_kcat"):
            text += f" = {ph['ratio_ours_to_kcat']}× kcat on the same records"
        if ph.get("fault"):
            text += f", delivery p99 {_n((o.get('latency_ms') or {}).get('p99'))} ms"
        parts.append(text)
    parts.append(f"{failed:,} failed, " + ("exact in every phase" if exact else "NOT exact"))
    figure = (f"producer, acks=all + idempotence, {_n(doc.get('records_per_phase'))} records "
              f"per phase, ≈ {_n(doc.get('avg_record_bytes'))} B each "
              + _conditions(doc, f"failed broker {doc.get('failed_broker', '?')}"))
    return figure, "; ".join(parts)


def bench_capacity(doc: Doc) -> tuple[str, str]:
    """The full-stack ladder's highest sustainable rate; the backlog drain stated apart."""
    d = doc.get("data") or {}
    steps = d.get("steps") or []
    best = d.get("highest_sustainable_eps")
    rates = "/".join(_n(s["target_eps"]) for s in steps)
    stack = "whole stack up (API, Dagster)" if d.get("whole_stack") else "stack scope not recorded"
    figure = (f"sustained capacity ladder {rates} ev/s, {_n(d.get('step_s'))} s steps, "
              f"sustainable = lag not growing and e2e p95 ≤ {_n(d.get('max_p95_ms'))} ms, {stack} "
              + _conditions(doc))
    by_rate = {s["target_eps"]: s for s in steps}
    if best:
        parts = [f"**{_n(best)} ev/s** highest sustainable "
                 f"(e2e p95 {_n(by_rate.get(best, {}).get('e2e_p95_ms'))} ms)"]
    else:
        parts = ["no step sustainable"]
    for s in steps:
        if not s.get("sustainable") and (best is None or s["target_eps"] != best):
            why = "; ".join(s.get("why_not") or []) or "?"
            parts.append(f"{_n(s['target_eps'])}: not ({why})")
    drains = [(s["drain_eps"], s["target_eps"]) for s in steps if s.get("drain_eps")]
    if drains:
        top, at = max(drains)
        parts.append(f"backlog drain (how fast a left-over backlog empties: a burst, not a "
                     f"sustained rate) up to {_n(top)} ev/s, at the {_n(at)} step")
    return figure, "; ".join(parts)


def bench_latency(doc: Doc) -> tuple[str, str]:
    """End-to-end percentiles over every event of the run, with completeness."""
    d = doc.get("data") or {}
    e2e = ((d.get("slo") or {}).get("stages") or {}).get("end_to_end") or {}
    stack = "partial stack" if d.get("partial_stack") else "whole stack up"
    figure = (f"end-to-end latency at {_n(d.get('rate'))} ev/s for {_n(d.get('minutes'))} min, "
              f"every event, {stack}, after {_n(d.get('idle_s'))} s idle " + _conditions(doc))
    passed = doc.get("passed")
    verdict = "" if passed is None else " (targets met)" if passed else " (targets missed)"
    ours = (f"{_n(d.get('acknowledged'))} events: p50 {_n(e2e.get('p50'))} ms, "
            f"**p95 {_n(e2e.get('p95'))} ms, p99 {_n(e2e.get('p99'))} ms**{verdict}; stored "
            f"{_n(d.get('stored'))}, failed sends {_n(d.get('failed'))}"
            + ("" if d.get("complete", True) else ", INCOMPLETE"))
    return figure, ours


def bench_cpu(doc: Doc) -> tuple[str, str]:
    """Stack CPU and RSS per rate step, with the budget verdicts."""
    d = doc.get("data") or {}
    steps = d.get("steps") or []
    cores = next((s.get("cores") for s in steps if s.get("cores")), None)
    rates = " / ".join(_n(s["rate"]) for s in steps)
    figure = (f"CPU and RSS of the whole stack at {rates} ev/s, {_n(d.get('step_s'))} s per step, "
              f"{_n(d.get('prewarm_s'))} s prewarm " + _conditions(doc))
    cpu = " / ".join(_n(s.get("stack_cpu_pct_machine")) for s in steps)
    rss = " / ".join(_n(s.get("stack_rss_mb_max")) for s in steps)
    verdict = ", ".join(f"{k} {'met' if v else 'missed'}"
                        for k, v in (d.get("verdict") or {}).items())
    return figure, (f"{cpu} % of the {cores or '?'} cores; RSS {rss} MB"
                    + (f"; targets: {verdict}" if verdict else ""))


def chaos_all(doc: Doc) -> tuple[str, str]:
    """Reconciliation totals and the RTO of every scenario (takeover and fencing included)."""
    d = doc.get("data") or {}
    cfg = d.get("config") or {}
    scs = d.get("scenarios") or []
    figure = (f"chaos, {len(scs)} scenarios at {_n(cfg.get('rate'))} ev/s, RTO from the moment "
              f"the fault took effect to the first commit after it " + _conditions(doc))
    run = [s for s in scs if not s.get("skipped")]
    recs = [s.get("reconciliation") or {} for s in run]
    acked = [r.get("acked", 0) for r in recs]
    total = {k: sum(r.get(k) or 0 for r in recs) for k in ("lost", "duplicated", "extra")}
    parts = [f"lost {total['lost']}, duplicated {total['duplicated']}, extra {total['extra']} of "
             f"{_n(min(acked, default=0))}–{_n(max(acked, default=0))} acknowledged events each"]
    rto = []
    for s in scs:
        if s.get("skipped"):
            rto.append(f"{s['scenario']} skipped ({s['skipped']})")
            continue
        text = f"{s['scenario']} {_n(s.get('rto_first_event_s'))} s"
        if s.get("takeover_p50_s") is not None and s.get("fenced_commits") is None:
            text += (f" (takeover p50 {_n(s['takeover_p50_s'], 2)} s, max "
                     f"{_n(s.get('takeover_max_s'), 2)} s over {cfg.get('kills', '?')} kills)")
        if s.get("fenced_commits") is not None:
            text += f" (commits by the fenced driver: {s['fenced_commits']})"
        if s.get("rto_service_s") is not None:
            text += f" (serving again {_n(s['rto_service_s'])} s after its restart)"
        if s.get("ok") is False:
            text += " NOT OK"
        rto.append(text)
    parts.append("RTO: " + ", ".join(rto))
    return figure, "; ".join(parts)


def slo(doc: Doc) -> tuple[str, str]:
    """Per-stage p50 and end-to-end p95/p99 over every event of the window."""
    d = doc.get("data") or {}
    st = d.get("stages") or {}

    def p(stage: str, q: str) -> str:
        return _n((st.get(stage) or {}).get(q))

    figure = (f"SLO report, every one of {_n(d.get('events'))} events of the window (by "
              f"{d.get('window_column', '?')}) " + _conditions(doc))
    return figure, (f"p50 produce→Kafka {p('produce_to_kafka', 'p50')} ms, Kafka→Spark "
                    f"{p('kafka_to_spark', 'p50')} ms, Spark→DB {p('spark_to_db', 'p50')} ms; "
                    f"e2e p95 {p('end_to_end', 'p95')} ms, p99 {p('end_to_end', 'p99')} ms")


def fuzz_stream(doc: Doc) -> tuple[str, str]:
    """How every generated record was accounted for, and whether the stream kept going."""
    gen = doc.get("generated") or {}
    fates = doc.get("fates") or {}
    led = doc.get("ledger") or {}
    bd = doc.get("batch_duration") or {}
    kinds = ", ".join(f"{k} {_n(v)}" for k, v in gen.items())
    figure = (f"fuzzing the real stream, {_n(sum(gen.values()))} generated records ({kinds}) "
              + _conditions(doc))
    isolated = fates.get("dlq:unstorable (isolated by the sink)", 0)
    ok = "every record accounted exactly once" if doc.get("ok") else \
        f"NOT all accounted: {len(doc.get('problems') or [])} problems"
    ours = (f"{ok} by partition/offset: {_n(led.get('stored'))} stored, {_n(led.get('dlq'))} DLQ "
            f"({_n(isolated)} isolated by the sink's bisect), {_n(led.get('late'))} late, "
            f"{_n(led.get('duplicates'))} duplicates; {_n(led.get('batches'))} batches, "
            f"{_n(led.get('unbalanced_batches'))} unbalanced; stream "
            + ("never stopped" if doc.get("stream_never_stopped") else "STOPPED"))
    with_, without = bd.get("with an isolated record") or {}, bd.get("without") or {}
    if with_ and without:
        ours += (f"; batch p50 {_n(with_.get('p50_s'))} s with an isolated record vs "
                 f"{_n(without.get('p50_s'))} s without")
    return figure, ours


def bench_api(doc: Doc) -> tuple[str, str]:
    """Locust totals beside the bare baseline, with the response cache state said out loud."""
    d = doc.get("data") or {}
    data = d.get("data") or {}
    ttl = d.get("cache_ttl_s")
    cache = ("response cache state not recorded" if ttl is None else
             f"{_n(ttl)} s response cache ON" if ttl > 0 else "response cache off")
    figure = (f"API under Locust, {_n(d.get('users'))} users for {_n(d.get('duration_s'))} s "
              f"(offered {_n(d.get('offered_rps'))} req/s), {_n(data.get('events_estimate'))} "
              f"events + {_n(data.get('anomalies'))} anomalies, {_n(d.get('api_workers'))} "
              f"workers, {cache} " + _conditions(doc))
    tot = {r.get("target"): r for r in doc.get("table") or [] if r.get("endpoint") == "ALL"}
    api, base = tot.get("api"), tot.get("baseline")
    if api:
        ours = (f"{_n(api['req/s'])} req/s, p50 {_n(api['p50 ms'])} ms, p95 "
                f"{_n(api['p95 ms'])} ms, p99 {_n(api['p99 ms'])} ms, {api['failures']} "
                f"failures")
    else:
        ours = f"{_n((d.get('verdict') or {}).get('total_rps'))} req/s"
    ours += f" ({cache})"
    if base:
        ours += (f"; bare uvicorn baseline in the same run {_n(base['req/s'])} req/s, p99 "
                 f"{_n(base['p99 ms'])} ms")
    off = d.get("cache_off")
    if off:
        ours += (f"; cache off: {_n(off.get('rps'))} req/s, p95 {_n(off.get('p95_ms'))} ms, "
                 f"p99 {_n(off.get('p99_ms'))} ms")
    elif ttl:
        ours += "; cache-off figure: not in this result"
    return figure, ours


def dagster_daily_sessions(doc: Doc) -> tuple[str, str]:
    """Cold and warm run time of the daily_sessions asset."""
    figure = (f"Dagster `daily_sessions`, {_n(doc.get('events'))} events over "
              f"{_n(doc.get('days'))} days, Spark {doc.get('spark_master', '?')} "
              + _conditions(doc))
    runs = ", ".join(f"{r['run']} {_n(r['seconds'])} s ({_n(r.get('events_per_s'))} ev/s)"
                     for r in doc.get("runs") or [])
    return figure, runs + " (cold includes the Spark start)"


def bench_dashboard(doc: Doc) -> tuple[str, str]:
    """Dashboard and API cost: interleaved rounds without a browser and with one on Live."""
    d = doc.get("data") or {}
    conds = d.get("conditions") or {}
    off, on = conds.get("off") or {}, conds.get("on") or {}
    rows = {r.get("condition"): r for r in doc.get("table") or []}
    ci = (rows.get("1 browser on Live") or {}).get("p99 − off, 95 % CI ms")
    calls = (rows.get("no browser; the Live page's API calls every refresh") or {}).get(
        "p99 − off, 95 % CI ms")
    session = (rows.get("no browser; a Streamlit session on Live that renders nothing")
               or {}).get("p99 − off, 95 % CI ms")
    figure = (f"dashboard cost, {_n(d.get('rounds', 1))} round(s) of {_n(d.get('watch_s'))} s "
              f"without a browser, then one browser on the Live page (refresh "
              f"{_n(d.get('refresh_s'))} s) " + _conditions(doc))
    ours = (f"dashboard CPU {_n(on.get('dashboard_cpu_pct'))} % of the cores, RSS max "
            f"{_n(on.get('dashboard_rss_mb_max'))} MB while watched; API probe p99 "
            f"{_n(off.get('p99_ms'))} → {_n(on.get('p99_ms'))} ms"
            + (f" (difference {ci}, bootstrap 95 %)" if ci else "")
            + (f"; the Live page's API calls alone, no browser: {calls}" if calls else "")
            + (f"; a Live session without a browser: {session}" if session else ""))
    return figure, ours


Extractor = Callable[[Doc], tuple[str, str]]

# kind (= file stem in the results folder) -> extractor, the original system's figure
KINDS: dict[str, tuple[Extractor, str]] = {
    "bench-producer": (bench_producer, "4,819 / 4,690 msg/s"),
    "bench-capacity": (bench_capacity, "15,000 ev/s (failing at 20,000)"),
    "bench-latency": (bench_latency, "p95 13,169 ms from 4 samples"),
    "bench-cpu": (bench_cpu, "—"),
    "chaos-all": (chaos_all, "≈ 62 s RTO, RPO 0 from a smoke test (no reconciliation)"),
    "slo": (slo, "p50 828 / 2,648 / 6,586 ms; e2e p95 13,169 ms (4 samples)"),
    "fuzz-stream": (fuzz_stream, "—"),
    "bench-api": (bench_api, "237.7 req/s at 200 users, p95 420 ms, p99 580 ms"),
    "dagster_daily_sessions": (dagster_daily_sessions, "—"),
    "bench-dashboard": (bench_dashboard, "—"),
}


# --- the table ---------------------------------------------------------------------------------


def _load_doc(path: Path) -> Doc | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def build_rows(results_dir: Path, link_base: Path) -> tuple[list[Row], list[str]]:
    """Rows for every kind with a result file, and the notes (dropped, missing, unreadable)."""
    rows: list[Row] = []
    notes: list[str] = []
    missing: list[str] = []
    for kind, (extract, original) in KINDS.items():
        path = results_dir / f"{kind}.json"
        if not path.exists():
            missing.append(kind)
            continue
        link = Path(os.path.relpath(path.with_suffix(".md"), link_base)).as_posix()
        doc = _load_doc(path)
        if doc is None:
            notes.append(f"dropped `{kind}`: [{kind}.json]({link[:-3]}.json) is not readable JSON")
            continue
        if doc.get("valid") is False:
            notes.append(f"dropped `{kind}` (run marked invalid): "
                         f"{doc.get('invalid_reason') or 'no reason given'} ([{kind}]({link}))")
            continue
        try:
            figure, ours = extract(doc)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            notes.append(f"dropped `{kind}`: its JSON lacks a field the table needs ({exc!r})")
            continue
        command = _command(doc)
        source = (f"`{command}`" if command != NOT_RECORDED else NOT_RECORDED) + \
            f" → [{kind}]({link})"
        rows.append(Row(kind, figure, ours, original, source))
    if missing:
        notes.append("no result in the results folder for: " + ", ".join(f"`{k}`" for k in missing))
    known = {f"{k}.json" for k in KINDS}
    others = sorted(p.name for p in results_dir.glob("*.json") if p.name not in known)
    if others:
        notes.append("result files without a row (no extractor): "
                     + ", ".join(f"`{o}`" for o in others))
    return rows, notes


def render(rows: list[Row], notes: list[str]) -> str:
    """The Markdown between the markers (markers included)."""
    lines = [START,
             "<!-- generated by `clickguard proof table` from the result files: "
             "do not edit by hand -->",
             "",
             "| figure | ours | original | source |",
             "|---|---|---|---|",
             *(f"| {_cell(r.figure)} | {_cell(r.ours)} | {_cell(r.original)} | {_cell(r.source)} |"
               for r in rows),
             ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def replace_table(text: str, block: str) -> str:
    """``text`` with everything from the start marker to the end marker replaced by ``block``."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"markers {START} … {END} not found (in that order)")
    return text[:i] + block + text[j + len(END):]


def generate(readme: Path, results_dir: Path) -> tuple[str, str]:
    """(current README text, README text with the regenerated table)."""
    text = readme.read_text()
    rows, notes = build_rows(results_dir, readme.parent)
    if not rows:  # a wrong folder would otherwise empty the README's table
        raise ValueError(f"no result file of the table in {results_dir} (one of "
                         f"{', '.join(f'{k}.json' for k in KINDS)}): nothing written")
    return text, replace_table(text, render(rows, notes))


@click.group()
def proof() -> None:
    """The README's proof figures, generated from the result files."""


@proof.command("table")
@click.option("--results", "results_dir", default=None,
              type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Results folder [default: settings.results_dir].")
@click.option("--readme", type=click.Path(path_type=Path, exists=True), default=None,
              help="README holding the markers [default: the repository's README.md].")
@click.option("--check", is_flag=True, help="Exit 1 if the README table is not the generated one.")
def table_cmd(results_dir: Path | None, readme: Path | None, check: bool) -> None:
    """Regenerate the README's proof table from <results>/*.json (or --check it)."""
    from clickguard.settings import REPO_ROOT, get_settings

    readme = readme or REPO_ROOT / "README.md"
    try:
        current, new = generate(readme, results_dir or get_settings().results_dir)
    except ValueError as exc:
        raise click.ClickException(f"{readme}: {exc}") from exc
    if check:
        if current != new:
            click.echo(f"{readme}: the proof table differs from the result files; "
                       "run `clickguard proof table`", err=True)
            raise SystemExit(1)
        click.echo(f"{readme}: proof table up to date")
        return
    if current != new:
        readme.write_text(new)
    click.echo(f"{readme}: proof table {'rewritten' if current != new else 'unchanged'}")
