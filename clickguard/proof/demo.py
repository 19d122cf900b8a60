"""`clickguard demo` (what `make run` runs): the whole platform up, realistic traffic flowing.

Starts every node of the stack whose code is present, then streams generated clickstream
traffic at ``demo_rate`` events/s with labelled anomalies (the four rules, in turn) and injected
faults (exact duplicates, late events, each kind of malformed record), prints where to look, and
a status line every ``demo_status_s`` seconds — events/s committed, consumer lag, anomalies and
DLQ rows — until Ctrl-C (or ``--duration``). The stack keeps running afterwards (`make stop`).
The status series is written as ``demo.json/.md/.png`` in the results folder.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from clickguard import db
from clickguard.proof.report import Report
from clickguard.proof.stream import probe_lag
from clickguard.settings import Settings, get_settings

ANOMALY_EVERY = 5000  # normal events between two injected anomaly blocks
FAULTS = {
    "duplicate_rate": 0.002, "late_rate": 0.001, "not_wire_format_rate": 0.0003,
    "unknown_schema_id_rate": 0.0003, "missing_required_rate": 0.0003,
    "out_of_range_rate": 0.0003, "avro_decode_error_rate": 0.0003,
}
COUNTS_SQL = """
SELECT (SELECT coalesce(sum(stored), 0) FROM batch_ledger),
       (SELECT count(*) FROM anomalies),
       (SELECT count(*) FROM dlq_events),
       (SELECT count(*) FROM late_events)
"""


@dataclass
class Status:
    at: datetime
    t: float
    events_per_s: float | None
    lag: int | None
    stored: int | None
    anomalies: int | None
    dlq: int | None
    late: int | None

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "?" if v is None else f"{v:,.0f}"

        return (f"{self.at:%H:%M:%S} events/s {f(self.events_per_s):>7} | lag {f(self.lag):>7} | "
                f"stored {f(self.stored):>10} | anomalies {f(self.anomalies):>6} | "
                f"DLQ {f(self.dlq):>6} | late {f(self.late):>6}")


def where_to_look(s: Settings, nodes: list[str]) -> str:
    api = f"http://{s.api_host}:{s.api_port}"
    lines = ["", "Clickstream Guardian is running. Where to look:"]
    if "dagster-webserver" in nodes:
        lines.append(f"  Dagster UI      http://{s.dagster_host}:{s.dagster_port}")
    if "api" in nodes:
        lines += [
            f"  API docs        {api}/docs",
            "  sample calls:",
            f"    curl -s {api}/health",
            f"    curl -s {api}/stats",
            f"    curl -s '{api}/anomalies?limit=5'",
            f"    curl -s {api}/anomalies/types",
            f"    curl -s '{api}/anomalies/timeline?hours=1'",
        ]
    lines += [
        "  stack           clickguard stack status   (logs: clickguard stack logs NODE)",
        "  faults          clickguard chaos broker-kill --short   (RTO + reconciliation)",
        f"  results         {s.results_dir}",
        "  stop            Ctrl-C stops the traffic; `make stop` stops the platform",
        "",
    ]
    return "\n".join(lines)


def read_status(s: Settings, t: float, prev: Status | None) -> Status:
    """One status line's numbers; a fresh connection each time survives database restarts."""
    stored = anomalies = dlq = late = None
    try:
        with db.connect(s, "reader", autocommit=True) as conn:
            row = conn.execute(COUNTS_SQL).fetchone()
        stored, anomalies, dlq, late = (int(v) for v in row)
    except Exception:  # noqa: BLE001 - the database may be restarting
        pass
    eps = None
    if prev is not None and prev.stored is not None and stored is not None and t > prev.t:
        eps = (stored - prev.stored) / (t - prev.t)
    return Status(datetime.now(UTC), round(t, 2), eps, probe_lag(s), stored, anomalies, dlq,
                  late)


def run_demo(s: Settings, rate: float, duration: float | None, faults: bool,
             status_every: float, echo: Any = print,
             core_only: bool = False) -> tuple[list[Status], dict[str, Any]]:
    from clickguard.producer.core import produce, register_schemas
    from clickguard.producer.faults import FaultConfig, FaultInjector
    from clickguard.producer.generator import Generator, GeneratorConfig
    from clickguard.stack.manager import INFRA, Stack

    stack = Stack(s, echo=echo)
    nodes = stack.resolve(None)
    echo(f"starting the platform: {', '.join(nodes)}")
    core = [n for n in nodes if n in (*INFRA, "streaming")]
    stack.up(core, timeout=300)  # without these there is no demo
    running = list(core)
    for extra in (n for n in nodes if n not in core and not core_only):
        try:  # the API and Dagster are shown if they start; the traffic flows regardless
            stack.up([extra], timeout=300)
            running.append(extra)
        except RuntimeError as exc:
            echo(f"WARNING: {extra} did not start ({exc}); continuing without it")
    echo(where_to_look(s, running))
    schema_id, rogue_id = register_schemas(s)
    gen = Generator(GeneratorConfig(seed=int(time.time()), anomaly_every=ANOMALY_EVERY))
    injector = FaultInjector(
        schema_id, FaultConfig(**FAULTS) if faults else None, rogue_schema_id=rogue_id,
        watermark_minutes=s.stream_watermark_minutes,
    )
    stop = threading.Event()
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["summary"] = produce(s, injector.records(gen.events()), rate=rate, stop=stop,
                                     progress=None, flush_timeout=60)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the demo goes on
            box["error"] = repr(exc)

    producer = threading.Thread(target=load, name="demo-traffic", daemon=True)
    producer.start()
    echo(f"streaming {rate:,.0f} events/s (run {gen.run_id}; anomalies every {ANOMALY_EVERY:,} "
         f"events; faults {'on' if faults else 'off'})")
    statuses: list[Status] = []
    t0 = time.monotonic()
    try:
        prev = None
        while duration is None or time.monotonic() - t0 < duration:
            time.sleep(status_every)
            if "error" in box:
                echo(f"traffic stopped: {box['error']}")
                break
            st = read_status(s, time.monotonic() - t0, prev)
            statuses.append(st)
            echo(st.line())
            prev = st
    except KeyboardInterrupt:
        echo("\nCtrl-C: stopping the traffic (the platform keeps running; `make stop` ends it)")
    stop.set()
    producer.join(timeout=90)
    truth = s.home / "demo" / f"{gen.run_id}.ground_truth.jsonl"
    n_truth = gen.write_ground_truth(truth)
    summary = box.get("summary")
    info: dict[str, Any] = {
        "run_id": gen.run_id, "rate": rate, "faults": FAULTS if faults else {},
        "ground_truth": str(truth), "injected_anomalies": n_truth,
        "producer": summary.to_dict() if summary is not None else {"error": box.get("error")},
    }
    return statuses, info


def demo_report(statuses: list[Status], info: dict[str, Any]) -> Report:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ts = [x.t for x in statuses]
        ax.plot(ts, [x.events_per_s if x.events_per_s is not None else float("nan")
                     for x in statuses], label="events/s committed")
        ax.set_xlabel("s")
        ax.set_ylabel("events/s")
        ax2 = ax.twinx()
        ax2.plot(ts, [x.lag if x.lag is not None else float("nan") for x in statuses], "r--",
                 label="lag")
        ax2.set_ylabel("lag (records)", color="r")
        ax.legend(loc="upper left", fontsize=8)

    last = statuses[-1] if statuses else None
    producer = info.get("producer", {})
    return Report(
        name="demo",
        title="Demo traffic: live status",
        data={**info, "status": [asdict(x) for x in statuses]},
        rows=[{"time": f"{x.at:%H:%M:%S}", "events/s": x.events_per_s, "lag": x.lag,
               "stored": x.stored, "anomalies": x.anomalies, "DLQ": x.dlq, "late": x.late}
              for x in statuses[-20:]],
        notes=[f"Run {info['run_id']} at {info['rate']:,.0f} events/s; producer acknowledged "
               f"{producer.get('acknowledged', '–')}, failed {producer.get('failed', '–')}; "
               f"{info['injected_anomalies']} anomalies injected (ground truth: "
               f"`{info['ground_truth']}`); final anomalies table "
               f"{last.anomalies if last else '–'} rows, DLQ {last.dlq if last else '–'}."],
        plot=draw,
        passed=bool(statuses) and "error" not in producer,
    )


@click.command("demo")
@click.option("--rate", type=float, default=None, help="Events/s (default: settings.demo_rate).")
@click.option("--duration", type=float, default=None, help="Seconds; default until Ctrl-C.")
@click.option("--no-faults", is_flag=True, help="Do not inject duplicates/late/malformed.")
@click.option("--status-every", type=float, default=None,
              help="Seconds between status lines (default: settings.demo_status_s).")
@click.option("--core-only", is_flag=True,
              help="Only Kafka, PostgreSQL, the registry and the stream (no API/Dagster).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def demo(rate: float | None, duration: float | None, no_faults: bool,
         status_every: float | None, core_only: bool, out: Path | None) -> None:
    """Bring the whole platform up and stream realistic traffic with anomalies and faults."""
    s = get_settings()
    statuses, info = run_demo(s, rate or s.demo_rate, duration, not no_faults,
                              status_every or s.demo_status_s, echo=click.echo,
                              core_only=core_only)
    paths = demo_report(statuses, info).write(out or s.results_dir)
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
