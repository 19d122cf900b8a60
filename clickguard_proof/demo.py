"""`clickguard demo` (what `make run` runs): the whole platform up, realistic traffic flowing.

Starts every node of the stack whose code is present, turns on Dagster's ``live_batch_sensor``
(so every batch asset is materialized while the traffic flows, and the API's /metrics, /items
and /stats fill within minutes instead of after the nightly schedule), then streams generated
clickstream traffic at ``demo_rate`` events/s with labelled anomalies (the four rules, in turn)
and injected faults (exact duplicates, late events, each kind of malformed record), prints where
to look, and a status line every ``demo_status_s`` seconds — events/s committed (over the last
minute, or since the start in the first one), consumer lag, anomalies, DLQ rows, newest batch
materialization — until Ctrl-C (or ``--duration``). The stack keeps running afterwards (`make
stop`); the sensor is put back to its default, off, unless it was on before the demo (left on,
it starts a Spark batch run for every later trickle of data, a benchmark's included).
The status series is written as ``demo.json/.md/.png`` in ``<home>/demo`` beside the run's ground
truth (not into the repository's docs/results: a user's demo must leave the clone unchanged).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
import httpx

from clickguard import db, ledger
from clickguard.cli_types import POSITIVE
from clickguard.settings import Settings, get_settings
from clickguard_proof.report import Report
from clickguard_proof.stream import probe_lag

if TYPE_CHECKING:
    from clickguard_stack.manager import Stack

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
       (SELECT count(*) FROM late_events),
       (SELECT max(computed_at) FROM asset_day_watermarks)
"""
# the Dagster sensor that materializes the batch assets while events arrive
# (clickguard_dagster/schedules.py; code location "clickguard" of workspace.yaml)
LIVE_BATCH_SENSOR = "live_batch_sensor"
DAGSTER_LOCATION = "clickguard"
START_SENSOR = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

SENSOR_STATUS = """
query SensorStatus($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
  }
}
"""

RESET_SENSOR = """
mutation ResetSensor($selector: SensorSelector!) {
  resetSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
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
    batch_at: datetime | None = None  # newest batch-asset day written by Dagster
    unhealthy: dict[str, str] = field(default_factory=dict)  # node -> state, of those started

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "?" if v is None else f"{v:,.0f}"

        batch = "-" if self.batch_at is None else f"{self.batch_at.astimezone(UTC):%H:%M:%S}"
        return (f"{self.at:%H:%M:%S} events/s {f(self.events_per_s):>7} | lag {f(self.lag):>7} | "
                f"stored {f(self.stored):>10} | anomalies {f(self.anomalies):>6} | "
                f"DLQ {f(self.dlq):>6} | late {f(self.late):>6} | batch {batch}"
                + (f" | NOT HEALTHY: {', '.join(f'{n} {st}' for n, st in self.unhealthy.items())}"
                   if self.unhealthy else ""))


def unhealthy_nodes(stack: Stack, names: list[str]) -> dict[str, str]:
    """The state of each of ``names`` that is not healthy (a killed broker, a restarting
    stream): the traffic goes on, so the status line must say it."""
    states = {name: stack.nodes[name].status().state for name in names}
    return {name: state for name, state in states.items() if state != "healthy"}


def demo_dir(s: Settings) -> Path:
    """Where a demo run writes its report and ground truth: under the home, never the repo."""
    return s.home / "demo"


class DemoRunning(click.ClickException):
    """Another demo streams on this home: a second one would double the traffic unseen."""


def hold_demo_lock(s: Settings, rate: float) -> IO[str]:
    """Take ``<home>/demo/demo.lock`` until the returned file is closed (the kernel releases it
    when the process ends, however it ends): a second `make run` while a demo streams would start a
    second producer and silently double the traffic (seen: 1,000 -> 2,000 events/s)."""
    path = demo_dir(s) / "demo.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        try:
            other = json.loads(f.read() or "{}")
        except ValueError:  # the holder is writing it this instant
            other = {}
        f.close()
        pid = other.get("pid", "?")
        raise DemoRunning(
            f"a demo is already streaming {other.get('rate', 0):,.0f} events/s on this stack "
            f"(pid {pid}, since {other.get('started', '?')}); a second one would double the "
            f"traffic. Watch it in its terminal or at http://127.0.0.1:{s.dashboard_port}; stop "
            f"it with Ctrl-C there or `kill -TERM {pid}` first; `clickguard stack status` "
            "shows the platform.") from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "rate": rate,
                        "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"}))
    f.flush()
    return f


def _sensor_call(s: Settings, query: str) -> dict[str, Any]:
    """One GraphQL call about ``live_batch_sensor`` to the Dagster webserver; its data."""
    selector = {"repositoryLocationName": DAGSTER_LOCATION, "repositoryName": "__repository__",
                "sensorName": LIVE_BATCH_SENSOR}
    r = httpx.post(f"http://{s.dagster_host}:{s.dagster_port}/graphql",
                   json={"query": query, "variables": {"selector": selector}}, timeout=30)
    r.raise_for_status()
    body = r.json()
    return {"errors": body["errors"]} if body.get("errors") else body.get("data") or {}


def live_batch_status(s: Settings) -> str | None:
    """``live_batch_sensor``'s status (RUNNING or STOPPED); None when Dagster does not say."""
    try:
        result = _sensor_call(s, SENSOR_STATUS).get("sensorOrError") or {}
    except (httpx.HTTPError, ValueError):
        return None
    return (result.get("sensorState") or {}).get("status")


def stop_live_batch(s: Settings) -> str | None:
    """Put ``live_batch_sensor`` back to its default (stopped): the demo turned it on, and left
    on it would go on starting a Spark batch run for every later trickle of data (a user's own
    producer, a benchmark: seen as a run every 1.5 min taking a core). None when done."""
    try:
        result = _sensor_call(s, RESET_SENSOR).get("resetSensor") or {}
    except (httpx.HTTPError, ValueError) as exc:
        return repr(exc)
    status = (result.get("sensorState") or {}).get("status")
    return None if status == "STOPPED" else result.get("message") or f"sensor status {status}"


def start_live_batch(s: Settings, timeout: float = 180.0) -> str | None:
    """Turn on ``live_batch_sensor`` through the Dagster webserver's GraphQL API; None when on,
    else why not. Retries while the webserver is still loading the code location."""
    deadline = time.monotonic() + timeout
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            data = _sensor_call(s, START_SENSOR)
            result = data.get("startSensor") or {}
            if result.get("__typename") == "Sensor":
                status = result["sensorState"]["status"]
                if status == "RUNNING":
                    return None
                why = f"sensor status {status}"
            else:
                why = result.get("message") or str(data.get("errors") or data)[:300]
        except (httpx.HTTPError, ValueError) as exc:
            why = repr(exc)
        time.sleep(2)
    return why


def where_to_look(s: Settings, nodes: list[str], live_batch: bool = False) -> str:
    api = f"http://{s.api_host}:{s.api_port}"
    today = datetime.now(UTC).date().isoformat()
    lines = ["", "Clickstream Guardian is running. Where to look:"]
    if "dagster-webserver" in nodes:
        ui = f"http://{s.dagster_host}:{s.dagster_port}"
        lines += [
            f"  Dagster UI      {ui}   (assets {ui}/assets, runs {ui}/runs)",
        ]
        if live_batch:
            lines.append(f"  batch assets    {LIVE_BATCH_SENSOR} is on: every batch asset is "
                         "materialized while events arrive (first run within ~2 min)")
    if "api" in nodes:
        lines += [
            f"  API docs        {api}/docs   (ReDoc: {api}/redoc)",
            "  sample calls:",
            f"    curl -s {api}/health",
            f"    curl -s {api}/stats",
            f"    curl -s '{api}/anomalies?limit=5'",
            f"    curl -s {api}/anomalies/types",
            f"    curl -s '{api}/anomalies/timeline?hours=1'",
            "  once the first batch run is done (status column `batch`):",
            f"    curl -s '{api}/metrics/daily?start_date={today}&end_date={today}'",
            f"    curl -s {api}/metrics/funnel/{today}",
            f"    curl -s '{api}/items/popular/{today}?limit=5'",
            f"    curl -s '{api}/metrics/summary?days=7'",
        ]
    if "dashboard" in nodes:
        lines.append(f"  dashboard       http://{s.dashboard_host}:{s.dashboard_port}   "
                     "(Live, Anomalies, Daily, DLQ)")
    lines += [
        "  stack           clickguard stack status   (logs: clickguard stack logs NODE)",
        "  faults          clickguard chaos broker-kill --short   (RTO + reconciliation)",
        f"  demo report     {demo_dir(s)}   (written at Ctrl-C or SIGTERM; benchmarks write to"
        f" {s.results_dir})",
        "  stop            Ctrl-C stops the traffic; `make stop` stops the platform",
        "",
    ]
    return "\n".join(lines)


def read_status(s: Settings, t: float) -> Status:
    """One status line's numbers; a fresh connection each time survives database restarts."""
    stored = anomalies = dlq = late = None
    batch_at = None
    eps = None
    try:
        with db.connect(s, "reader", autocommit=True) as conn:
            row = db.one(conn, COUNTS_SQL)
            eps = ledger.events_per_second(conn)
        stored, anomalies, dlq, late = (int(v) for v in row[:4])
        batch_at = row[4]
    except Exception:  # noqa: BLE001 - the database may be restarting
        pass
    return Status(datetime.now(UTC), round(t, 2), eps, probe_lag(s), stored, anomalies, dlq,
                  late, batch_at)


def run_demo(s: Settings, rate: float, duration: float | None, faults: bool,
             status_every: float, echo: Any = print,
             core_only: bool = False) -> tuple[list[Status], dict[str, Any]]:
    """Start the platform, stream until Ctrl-C/SIGTERM or ``duration``; one demo per stack."""
    # before anything starts, a second demo only says why not; held until the traffic stopped
    with hold_demo_lock(s, rate):
        return _stream_demo(s, rate, duration, faults, status_every, echo, core_only)


def _stream_demo(s: Settings, rate: float, duration: float | None, faults: bool,
                 status_every: float, echo: Any,
                 core_only: bool) -> tuple[list[Status], dict[str, Any]]:
    from clickguard_producer.core import produce, register_schemas
    from clickguard_producer.faults import FaultConfig, FaultInjector
    from clickguard_producer.generator import Generator, GeneratorConfig
    from clickguard_stack.manager import INFRA, Stack

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
    live_batch = was_on = False
    if {"dagster-webserver", "dagster-daemon"} <= set(running):
        was_on = live_batch_status(s) == "RUNNING"  # then it is the user's, and stays on
        why = start_live_batch(s)
        live_batch = why is None
        if why is not None:
            echo(f"WARNING: could not turn on {LIVE_BATCH_SENSOR} ({why}); batch assets will "
                 f"wait for the nightly schedule (or: dagster sensor start {LIVE_BATCH_SENSOR})")
    echo(where_to_look(s, running, live_batch))
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
    warned: set[str] = set()
    t0 = time.monotonic()
    restore_sigterm = sigterm_as_ctrl_c()
    try:
        while duration is None or time.monotonic() - t0 < duration:
            time.sleep(status_every)
            if "error" in box:
                echo(f"traffic stopped: {box['error']}")
                break
            st = read_status(s, time.monotonic() - t0)
            st.unhealthy = unhealthy_nodes(stack, running)
            for name, state in st.unhealthy.items():
                if name not in warned:
                    restart = f"; restart: `clickguard stack up {name}`" if state == "down" else ""
                    echo(f"WARNING: {name} {state}; the traffic goes on (`clickguard stack status`,"
                         f" `clickguard stack logs {name}`{restart})")
            warned = set(st.unhealthy)  # warned once per outage; again if it fails again
            statuses.append(st)
            echo(st.line())
    except KeyboardInterrupt:
        echo("\nCtrl-C (or SIGTERM): stopping the traffic (the platform keeps running; "
             "`make stop` ends it)")
    finally:
        restore_sigterm()
    stop.set()
    producer.join(timeout=90)
    if live_batch and not was_on:
        why = stop_live_batch(s)
        echo(f"{LIVE_BATCH_SENSOR} turned off again (the demo turned it on)" if why is None else
             f"WARNING: could not turn {LIVE_BATCH_SENSOR} off ({why}): it goes on starting a "
             f"batch run whenever new rows arrive; `dagster sensor stop {LIVE_BATCH_SENSOR}`")
    truth = demo_dir(s) / f"{gen.run_id}.ground_truth.jsonl"
    n_truth = gen.write_ground_truth(truth)
    summary = box.get("summary")
    info: dict[str, Any] = {
        "run_id": gen.run_id, "rate": rate, "faults": FAULTS if faults else {},
        "live_batch_sensor": live_batch,
        "ground_truth": str(truth), "injected_anomalies": n_truth,
        "producer": summary.to_dict() if summary is not None else {"error": box.get("error")},
    }
    return statuses, info


def sigterm_as_ctrl_c() -> Callable[[], None]:
    """SIGTERM (`kill PID`, a service manager, a CI job's timeout) stops the demo as Ctrl-C
    does: the traffic stops and the report is written (SIGTERM ended it without a report, and a
    background job ignores SIGINT). Returns what restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


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
               "stored": x.stored, "anomalies": x.anomalies, "DLQ": x.dlq, "late": x.late,
               "batch": f"{x.batch_at:%H:%M:%S}" if x.batch_at else "-"}
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
@click.option("--rate", type=POSITIVE,
              default=None, help="Events/s (default: settings.demo_rate).")
@click.option("--duration", type=POSITIVE,
              default=None, help="Seconds; default until Ctrl-C.")
@click.option("--no-faults", is_flag=True, help="Do not inject duplicates/late/malformed.")
@click.option("--status-every", type=POSITIVE, default=None,
              help="Seconds between status lines (default: settings.demo_status_s).")
@click.option("--core-only", is_flag=True,
              help="Only Kafka, PostgreSQL, the registry and the stream (no API/Dagster).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report folder (default: <home>/demo).")
def demo(rate: float | None, duration: float | None, no_faults: bool,
         status_every: float | None, core_only: bool, out: Path | None) -> None:
    """Bring the whole platform up and stream realistic traffic with anomalies and faults."""
    s = get_settings()
    statuses, info = run_demo(s, rate or s.demo_rate, duration, not no_faults,
                              status_every or s.demo_status_s, echo=click.echo,
                              core_only=core_only)
    paths = demo_report(statuses, info).write(out or demo_dir(s))
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
