"""`clickguard bench ...`: benchmarks that write JSON + Markdown + PNG into a results folder.

Each benchmark is one click subcommand of the ``bench`` group; add one by writing a function
decorated with ``@bench.command("name")`` (the heavy lifting lives in a function beside it).

``bench producer`` (issue 6, item 2): the same pre-encoded records sent by our producer
(`clickguard_producer.core.produce`) with the cluster healthy, with one broker SIGKILLed mid-run
and with one broker stopped cleanly mid-run, and by ``kcat`` with the same librdkafka settings
(acks=all, idempotence, lz4, batching) to the same cluster in the same run. Every phase checks
that the topic's end offsets grew by exactly the number of records (nothing lost, nothing extra)
and that no delivery failed.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from clickguard import kafka as kafka_helpers
from clickguard.cli_types import COUNT
from clickguard.settings import Settings, get_settings
from clickguard_producer import scratch
from clickguard_producer.core import ProducerError, produce, register_schemas
from clickguard_producer.faults import FaultInjector, Record
from clickguard_producer.generator import Generator, GeneratorConfig

# Debian's kcat links the distribution's librdkafka (2.0.x), older than the wheel's: it rejects
# these properties, so kcat runs with librdkafka's defaults for them
KCAT_UNSUPPORTED = ("retry.backoff.max.ms",)


# benchmarks that live in their own modules: name -> "module:attribute", imported on first use
SUBCOMMANDS = {
    "api": "clickguard_proof.bench_api:api",
    "capacity": "clickguard_proof.bench_capacity:capacity",
    "latency": "clickguard_proof.bench_latency:latency",
    "cpu": "clickguard_proof.bench_cpu:cpu",
    "dashboard": "clickguard_proof.bench_dashboard:dashboard",
    "scaling": "clickguard_proof.bench_scaling:scaling_cmd",
}


class _BenchGroup(click.Group):
    """The ``bench`` group: commands defined here plus the lazily imported SUBCOMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            module, attr = SUBCOMMANDS[name].split(":")
            try:
                return getattr(importlib.import_module(module), attr, None)
            except ModuleNotFoundError:
                return None
        return super().get_command(ctx, name)


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Benchmarks with results in JSON + Markdown + PNG."""


# ---------------------------------------------------------------------------------------------
# bench producer
# ---------------------------------------------------------------------------------------------
@bench.command("producer")
@click.option("--count", type=COUNT,
              default=500_000, show_default=True, help="Records per phase.")
@click.option("--smoke", is_flag=True,
              help="CI mode: 6,000 records per phase at 3,000/s; kcat only in the healthy phase.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder [default: settings.results_dir, whose index it refreshes].")
@click.option("--broker", default="leader", show_default=True,
              callback=lambda _c, _p, v: _broker_choice(v),
              help="Broker to fail: kafka-N, 'leader' = leader of most partitions, or "
                   "'controller' = the active KRaft controller when each fault phase starts.")
@click.option("--no-kcat", is_flag=True, help="Skip the kcat comparison.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 9), default=3, show_default=True,
              help="Healthy phase: ours and kcat this many times each, in alternating order "
                   "(the median of each is compared).")
def producer_cmd(
    count: int, smoke: bool, out: Path | None, broker: str, no_kcat: bool, seed: int,
    rounds: int,
) -> None:
    """Producer events/s and delivery latency: healthy, broker killed, broker stopped; vs kcat."""
    rate = None
    if smoke:
        count, rate = 6_000, 3_000.0
    try:
        result = run_producer_bench(
            get_settings(), count=count, rate=rate, broker=broker, kcat=not no_kcat, seed=seed,
            kcat_under_faults=not smoke, rounds=1 if smoke else rounds,
            echo=lambda m: click.echo(m, err=True),
        )
    except ProducerError as exc:
        raise click.ClickException(str(exc)) from exc
    paths = write_producer_results(result, out or get_settings().results_dir)
    if out is None:  # the default run is the one the results index quotes
        from clickguard_proof.summary import write_index

        paths.append(write_index(get_settings().results_dir))
    click.echo(render_markdown(result))
    click.echo("\nwritten: " + ", ".join(str(p) for p in paths))
    if any(ph["ours"]["failed"] or not ph["ours"]["exact"] for ph in result["phases"]):
        raise SystemExit(1)


def run_producer_bench(
    settings: Settings,
    count: int,
    rate: float | None = None,
    broker: str = "leader",
    kcat: bool = True,
    kcat_under_faults: bool = True,
    seed: int = 42,
    paced_rate: float | None = 5_000.0,
    echo: Callable[[str], None] = print,
    rounds: int = 1,
) -> dict[str, Any]:
    """Run the phases (plus kcat) and return the result document."""
    from clickguard_proof.results import machine
    from clickguard_stack.manager import Stack

    stack = Stack(settings, echo=lambda _m: None)
    topic = settings.topic_bench
    _require_healthy(settings)
    scratch.create_fresh(settings, topic)
    leader = _pick_broker(settings, topic) if broker == "leader" else broker

    def fault_target() -> str:
        """The broker the next fault phase fails; "controller" is the active KRaft controller
        when that phase starts (its loss adds an election to the fencing)."""
        return (stack.active_controller() or "kafka-1") if broker == "controller" else leader

    target = fault_target()
    schema_id, _rogue = register_schemas(settings)
    echo(f"generating and encoding {count:,} records (seed {seed})...")
    t = time.monotonic()
    gen = Generator(GeneratorConfig(seed=seed, run_id=f"bench{seed}", anomaly_every=20_000))
    records = list(FaultInjector(schema_id).records(gen.events(count)))
    encode_s = time.monotonic() - t
    size = sum(len(r.value) + len(r.key) for r in records)
    echo(f"  {encode_s:.1f}s ({count / encode_s:,.0f} records/s), {size / count:.0f} B/record")
    result: dict[str, Any] = {
        "benchmark": "producer",
        "machine": machine(),
        "topic": topic,
        "records_per_phase": count,
        "avg_record_bytes": round(size / count, 1),
        "rate_limit": rate,
        "generate_encode_eps": round(count / encode_s, 1),
        "failed_broker": target,
        "broker_choice": broker,
        "producer_config": _public_config(settings),
        "healthy_rounds": rounds,
        "phases": [],
    }
    phases: list[tuple[str, str | None]] = [
        ("healthy", None), ("broker_sigkilled", "kill"), ("broker_stopped", "stop"),
    ]
    if paced_rate and rate is None:
        # delivery latency at a steady, realistic rate (at full speed it is mostly queueing)
        n = min(count, int(paced_rate * 5))
        echo(f"phase healthy_paced: ours at {paced_rate:,.0f}/s, {n:,} records")
        result["phases"].append({
            "name": f"healthy_{paced_rate:.0f}_per_s", "fault": None, "rate": paced_rate,
            "ours": _run_ours(settings, topic, records[:n], paced_rate, {}, echo),
        })
    kcat_healthy_s = 1.0
    for name, action in phases:
        with_kcat = kcat and (kcat_under_faults or not action)
        echo(f"phase {name}: ours{' + kcat' if with_kcat else ''}")
        if action:
            target = fault_target()
        phase: dict[str, Any] = {"name": name, "fault": action and f"{action} {target}"}
        fault_at: dict[int, Callable[[], None]] = {}
        if action:
            fault_at[count // 3] = _fault_hook(settings, stack, topic, target, action, phase, echo)
        try:
            if not action and with_kcat and rounds > 1 and _kcat_exe():
                phase.update(_alternating_rounds(settings, topic, records, stack, rounds, echo))
            else:
                phase["ours"] = _run_ours(settings, topic, records, rate, fault_at, echo)
        finally:  # a failed phase must not leave the broker down for whatever runs next
            if action:
                _restore(settings, stack, topic, target, echo)
        if with_kcat:
            if "kcat" not in phase:  # (the alternating rounds ran it already)
                phase["kcat"] = _run_kcat(
                    settings, topic, records, stack, target if action else None, action,
                    kcat_healthy_s / 3, echo,
                )
            if not action:
                kcat_healthy_s = phase["kcat"].get("duration_s") or 1.0
            if action:
                _restore(settings, stack, topic, target, echo)
            k = phase["kcat"].get("throughput_eps")
            if k and rate is None:  # paced (smoke) runs are not a speed comparison
                phase["ratio_ours_to_kcat"] = round(phase["ours"]["throughput_eps"] / k, 3)
        result["phases"].append(phase)
        if not action and (os.cpu_count() or 1) >= 2:  # unpaced in --smoke too
            # the same records from both cores: one Python process hands librdkafka one record
            # per produce() call plus one delivery callback, which caps it below kcat
            workers = min(os.cpu_count() or 2, 4)
            echo(f"phase healthy_{workers}_processes: ours, {workers} forked processes")
            par: dict[str, Any] = {"name": f"healthy_{workers}_processes", "fault": None,
                                   "workers": workers,
                                   "ours": _run_ours(settings, topic, records, None, {},
                                                     echo, workers=workers)}
            k = (phase.get("kcat") or {}).get("throughput_eps")
            if k:
                par["ratio_ours_to_kcat"] = round(par["ours"]["throughput_eps"] / k, 3)
            result["phases"].append(par)
        if not action:  # (unpaced in --smoke too: a small count is cheap)
            # as users run it: the literal `clickguard produce --count N` (no rate limit), which
            # generates, faults and encodes while sending, in worker processes
            echo(f"phase as_users_run_it: clickguard produce --count {count}")
            result["phases"].append({
                "name": "as_users_run_it", "fault": None,
                "ours": _run_cli(settings, topic, count, seed, echo),
            })
    if paced_rate and rate is None:
        # the fail-over stall as a producer at a steady rate sees it: at full speed every record
        # sent during the stall queues behind it and drains after it at the brokers' speed, so
        # the unpaced phase's p99 is the stall plus that backlog (1.6-4.1 s in five runs)
        n = min(count, int(paced_rate * 15))
        name = f"broker_sigkilled_{paced_rate:.0f}_per_s"
        echo(f"phase {name}: ours at {paced_rate:,.0f}/s, {n:,} records")
        target = fault_target()
        phase = {"name": name, "fault": f"kill {target}", "rate": paced_rate}
        hook = _fault_hook(settings, stack, topic, target, "kill", phase, echo)
        try:
            phase["ours"] = _run_ours(settings, topic, records[:n], paced_rate, {n // 3: hook},
                                      echo)
        finally:
            _restore(settings, stack, topic, target, echo)
        result["phases"].append(phase)
    scratch.delete(settings, topic)
    result["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _restore(
    settings: Settings, stack: Any, topic: str, target: str, echo: Callable[[str], None],
) -> None:
    """Start the failed broker again and wait until every partition of ``topic`` is back to its
    full ISR, so that what runs next (a phase, kcat, another command) meets a whole cluster."""
    echo(f"  restarting {target}")
    stack.control("start", target)
    scratch.wait_full_isr(settings, topic)


def _fault_hook(
    settings: Settings, stack: Any, topic: str, target: str, action: str,
    info: dict[str, Any], echo: Callable[[str], None],
) -> Callable[[], None]:
    """The call that fails ``target`` mid-run (``stack.control(action, target)``), noting in
    ``info`` how many records were written before it and which node was the controller."""
    base = scratch.total_offsets(settings, topic)

    def fault() -> None:
        # mid-run means after the producer is warmed up: the first records are on the
        # brokers (a fresh idempotent producer first needs its producer id)
        deadline = time.monotonic() + 15
        while scratch.total_offsets(settings, topic) <= base and time.monotonic() < deadline:
            time.sleep(0.05)
        info["written_before_fault"] = scratch.total_offsets(settings, topic) - base
        # the active controller's loss adds a KRaft election to the broker's fencing
        info["active_controller"] = stack.active_controller()
        echo(f"  {action} {target} ({info['written_before_fault']:,} records written; "
             f"active controller {info['active_controller']})")
        stack.control(action, target)

    return fault


def _run_ours(
    settings: Settings,
    topic: str,
    records: Iterable[Record],
    rate: float | None,
    at: dict[int, Callable[[], None]],
    echo: Callable[[str], None],
    expected: int | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Our producer on ``records``, in this process or (``workers`` > 1, unpaced, no fault
    hooks) from forked processes; exact = acknowledged and end offsets both grew by n."""
    before = scratch.total_offsets(settings, topic)
    if workers > 1:
        from clickguard_producer.parallel import produce_records_parallel

        summary = produce_records_parallel(settings, list(records), workers=workers, topic=topic,
                                           progress=lambda m: echo(f"  {m}"))
    else:
        summary = produce(settings, records, topic=topic, rate=rate, at=at,
                          progress=lambda m: echo(f"  {m}"))
    written = scratch.total_offsets(settings, topic) - before
    n = expected if expected is not None else len(records)  # type: ignore[arg-type]
    out = {
        "records": n,
        "sent": summary.sent,
        "acknowledged": summary.acknowledged,
        "failed": summary.failed,
        "errors": summary.errors,
        "duration_s": summary.duration_s,
        "throughput_eps": summary.throughput_eps,
        "latency_ms": summary.latency_ms,
        "offsets_written": written,
        "exact": written == n and summary.acknowledged == n,
        "rate_target": rate,
    }
    return out if workers == 1 else {**out, "workers": workers}


def _alternating_rounds(
    settings: Settings,
    topic: str,
    records: list[Record],
    stack: Any,
    rounds: int,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Ours and kcat ``rounds`` times each, the order swapped every round; the median run of each.

    Whichever sends first into a fresh topic pays for the brokers' warm-up (their JIT for the
    high-rate paths, new log segments): ours always went first and, on the same warm stack,
    ran at 169,012-238,646 ev/s as a process's first run and 329,677-486,936 ev/s on the next
    tries (2026-12-05, docs/producer.md).
    """
    ours_runs: list[dict[str, Any]] = []
    kcat_runs: list[dict[str, Any]] = []
    for i in range(rounds):
        order = ("ours", "kcat") if i % 2 == 0 else ("kcat", "ours")
        for who in order:
            echo(f"  round {i + 1}/{rounds}: {who}")
            if who == "ours":
                ours_runs.append(_run_ours(settings, topic, records, None, {}, echo))
            else:
                kcat_runs.append(_run_kcat(settings, topic, records, stack, None, None, 0.0, echo))

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return sorted(runs, key=lambda r: r["throughput_eps"])[len(runs) // 2]

    ours = {**median(ours_runs), "exact": all(r["exact"] for r in ours_runs),
            "failed": sum(r["failed"] for r in ours_runs),
            "rounds_eps": [r["throughput_eps"] for r in ours_runs]}
    kcat = {**median(kcat_runs), "exact": all(r["exact"] for r in kcat_runs),
            "rounds_eps": [r["throughput_eps"] for r in kcat_runs]}
    return {"ours": ours, "kcat": kcat, "rounds": rounds}


def _kcat_exe() -> str | None:
    return shutil.which("kcat") or shutil.which("kafkacat")


def _run_cli(
    settings: Settings, topic: str, count: int, seed: int, echo: Callable[[str], None]
) -> dict[str, Any]:
    """`clickguard produce` as a subprocess; exact = end offsets grew by ``count``."""
    import json
    import sys

    before = scratch.total_offsets(settings, topic)
    with tempfile.TemporaryDirectory(prefix="bench-produce-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        argv = [sys.executable, "-m", "clickguard_cli", "produce", "--count", str(count),
                "--topic", topic, "--seed", str(seed), "--summary", str(summary_path)]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # its progress lines, as the user sees them
            echo(f"  {line.rstrip()}")
        proc.wait(timeout=900)
        wall = time.monotonic() - t0
        s = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    written = scratch.total_offsets(settings, topic) - before
    acked = s.get("acknowledged", 0)
    return {
        "command": " ".join(["clickguard", *argv[3:-2]]),
        "returncode": proc.returncode,
        "records": count,
        "sent": s.get("sent", 0),
        "acknowledged": acked,
        "failed": s.get("failed", count),
        "errors": s.get("errors", {}),
        "workers": s.get("workers"),
        "duration_s": s.get("duration_s", 0.0),
        "throughput_eps": s.get("throughput_eps", 0.0),
        "command_wall_s": round(wall, 3),
        "command_wall_eps": round(acked / wall, 1) if wall else 0.0,
        "latency_ms": s.get("latency_ms", {}),
        "offsets_written": written,
        "exact": written == count and acked == count and proc.returncode == 0,
        "rate_target": None,
    }


def _run_kcat(
    settings: Settings,
    topic: str,
    records: list[Record],
    stack: Any,
    target: str | None,
    action: str | None,
    fault_after_s: float,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """kcat -P on the same records; binary-safe via random multi-byte key/message delimiters."""
    exe = _kcat_exe()
    if exe is None:
        return {"error": "kcat not installed (Debian package `kcat`, installed by `make setup`)"}
    kdelim, mdelim = _delimiters(records)
    with tempfile.NamedTemporaryFile(prefix="kcat-", suffix=".bin", delete=False) as f:
        for r in records:
            f.write(r.key + kdelim + r.value + mdelim)
        path = f.name
    argv = [
        exe, "-P", "-q", "-b", settings.bootstrap_servers, "-t", topic,
        "-K", _escape(kdelim), "-D", _escape(mdelim), "-z", "lz4", "-l", path,
    ]
    for k, v in _public_config(settings).items():
        if k not in ("bootstrap.servers", "compression.type", *KCAT_UNSUPPORTED):
            argv += ["-X", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    secret = kafka_helpers.client_security(settings).get("sasl.password")
    secret_file = None
    if secret is not None:  # a config file (mode 600), not argv, which `ps` shows to anyone
        with tempfile.NamedTemporaryFile("w", prefix="kcat-", suffix=".conf", delete=False) as c:
            c.write(f"sasl.password={secret}\n")
        secret_file = c.name
        argv += ["-F", secret_file]
    before = scratch.total_offsets(settings, topic)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if target and action:
        # the same fault at about the same point: a third of the way through, by elapsed time
        # (kcat reports no progress), estimated from the healthy kcat run
        time.sleep(max(0.2, fault_after_s))
        echo(f"  kcat: {action} {target}")
        stack.control(action, target)
    _stdout, stderr = proc.communicate(timeout=900)
    took = time.monotonic() - t0
    written = scratch.total_offsets(settings, topic) - before
    os.unlink(path)
    if secret_file:
        os.unlink(secret_file)
    err_lines = stderr.decode(errors="replace").splitlines()
    failed_lines = [ln for ln in err_lines if "ailed" in ln or "ERROR" in ln]
    return {
        "returncode": proc.returncode,
        "duration_s": round(took, 3),
        "throughput_eps": round(written / took, 1) if took else 0.0,
        "offsets_written": written,
        "exact": written == len(records) and proc.returncode == 0,
        "delivery_errors": failed_lines[:5],
        "stderr_tail": err_lines[-5:],
        "config_not_supported_by_kcat": list(KCAT_UNSUPPORTED),
        "note": "wall time of the kcat process, startup included; no per-message latency",
    }


def _delimiters(records: list[Record]) -> tuple[bytes, bytes]:
    """Random 8-byte delimiters that occur in no key and no value (checked, not hoped).

    kcat's ``parse_delim`` turns ``-D``/``-K`` into a C string: a NUL byte would cut the
    delimiter short (two bytes of it occur dozens of times in a few MB of Avro, and kcat then
    splits records), and a backslash would start another escape. Neither may occur.
    """
    while True:
        kd, md = os.urandom(8), os.urandom(8)
        if kd == md or any(b in (0, 0x5C) for b in kd + md):
            continue
        if not any(kd in r.key or md in r.key or kd in r.value or md in r.value for r in records):
            return kd, md


def _escape(delim: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in delim)


def _public_config(settings: Settings) -> dict[str, object]:
    """The producer's config as results may print it: plain values only (no callables, no
    logger), no SASL password."""
    conf = kafka_helpers.producer_config(settings)
    return {k: v for k, v in conf.items()
            if isinstance(v, str | int | float | bool) and k != "sasl.password"}


def _require_healthy(settings: Settings) -> None:
    try:
        health = kafka_helpers.cluster_health(settings)
    except Exception as exc:
        raise ProducerError(
            f"Kafka at {settings.bootstrap_servers} is unreachable ({exc}); "
            "start it with `clickguard stack up`"
        ) from exc
    if not health.ready(settings.kafka_nodes):
        raise ProducerError(
            f"the cluster is not healthy ({health}); start it with `clickguard stack up`"
        )


def _broker_choice(value: str) -> str:
    if value in ("leader", "controller") or re.fullmatch(r"kafka-[1-9]\d*", value):
        return value
    raise click.BadParameter(f"{value!r}: give kafka-N, 'leader' or 'controller'")


def _pick_broker(settings: Settings, topic: str) -> str:
    """kafka-N leading the most partitions of ``topic`` (its loss hurts most)."""
    md = kafka_helpers.admin(settings).list_topics(topic, timeout=10)
    leaders: dict[int, int] = {}
    for p in md.topics[topic].partitions.values():
        leaders[p.leader] = leaders.get(p.leader, 0) + 1
    node_id = max(sorted(leaders), key=lambda n: leaders[n])
    return f"kafka-{node_id}"


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
def render_markdown(result: dict[str, Any]) -> str:
    from clickguard_proof.results import md_table

    m = result["machine"]
    rows = []
    for ph in result["phases"]:
        o, k = ph["ours"], ph.get("kcat", {})
        lat = o.get("latency_ms", {})
        rows.append([
            ph["name"], ph["fault"] or "-", f"{o['throughput_eps']:,.0f}",
            f"{k['throughput_eps']:,.0f}" if k.get("throughput_eps") else "-",
            ph.get("ratio_ours_to_kcat", "-"), lat.get("p50", "-"), lat.get("p95", "-"),
            lat.get("p99", "-"), o["failed"], "yes" if o["exact"] else "NO",
            ("yes" if k.get("exact") else "NO") if k else "-",
        ])
    table = md_table(
        ["phase", "fault", "ours ev/s", "kcat ev/s", "ours/kcat", "p50 ms", "p95 ms", "p99 ms",
         "failed", "ours exact", "kcat exact"],
        rows,
    )
    ctl = "".join(  # one sentence per failed phase
        f" At `{ph['fault']}` the active KRaft controller was `{ph['active_controller']}`"
        + (" (the failed broker: its loss adds a controller election)"
           if ph["active_controller"] == ph["fault"].split()[-1] else "")
        + f" ({ph['name']})."
        for ph in result["phases"] if ph["fault"] and ph.get("active_controller")
    )
    return f"""# Producer benchmark

{result['records_per_phase']:,} records per phase ({result['avg_record_bytes']} B each, Avro
Confluent wire format), topic `{result['topic']}` (6 partitions, RF 3, min ISR 2), acks=all +
idempotence + lz4. Fault target: {_target(result)}, failed once a third of the
records was sent and the first were written (mid-run), restarted after the phase.{ctl}
Measured {m['measured_at']} on {m['cpus']} CPUs / {m['memory_gb']} GB, load average
{m['load_avg_1_5_15']} before and {m.get('load_avg_after')} after (the whole stack and other
processes share the machine).

{table}

- ours ev/s = acknowledged / (first produce() -> last delivery report); latency = librdkafka's
  per-message produce() -> delivery report time over every record.
- kcat ev/s = records written (end-offset delta) / kcat process wall time.
- `healthy`: ours and kcat {result.get('healthy_rounds', 1)} time(s) each, the order swapped
  every round (the first sender into a fresh topic pays for the brokers' warm-up); the table
  shows the median run of each{_rounds(result)}.
- `healthy_N_processes` = the same pre-encoded records from N forked processes (every N-th
  record each, one idempotent producer each): one Python process is capped by its produce()
  call and delivery callback per record; its ours/kcat is against the `healthy` kcat run.
- exact = the topic's end offsets grew by exactly the record count and every record was
  acknowledged.
- Generating + encoding before the timed phases (one process): {result['generate_encode_eps']:,.0f}
  records/s. `as_users_run_it` is the literal `clickguard produce --count N` (no rate limit):
  generating, faulting and encoding while sending, in worker processes; its ev/s is acknowledged /
  (first produce() -> last delivery report){_cli_wall(result)}.
- `broker_sigkilled_N_per_s` = the broker SIGKILLed a third into 15 s at N records/s: the
  fail-over stall as a producer at a steady rate sees it. In the unpaced `broker_sigkilled`
  every record sent during the stall queues behind it and drains after it at the brokers'
  speed, so its p99 is the stall plus that backlog.
- Original system: 4,819 msg/s healthy, 4,690 msg/s with a broker down.
"""


def _target(result: dict[str, Any]) -> str:
    if result.get("broker_choice") == "controller":
        return "the active KRaft controller when each fault phase started"
    return f"`{result['failed_broker']}`"


def _rounds(result: dict[str, Any]) -> str:
    for ph in result["phases"]:
        if ph["name"] == "healthy" and "rounds_eps" in ph["ours"]:
            o = ", ".join(f"{x:,.0f}" for x in ph["ours"]["rounds_eps"])
            k = ", ".join(f"{x:,.0f}" for x in ph["kcat"]["rounds_eps"])
            return f" (every run, ev/s: ours {o}; kcat {k})"
    return ""


def _cli_wall(result: dict[str, Any]) -> str:
    for ph in result["phases"]:
        if ph["name"] == "as_users_run_it":
            o = ph["ours"]
            return (f"; the whole command (start-up included) took {o['command_wall_s']} s = "
                    f"{o['command_wall_eps']:,.0f} ev/s with {o['workers']} worker(s)")
    return ""


def write_producer_results(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from clickguard_proof.results import write_results

    def label(ph: dict[str, Any]) -> str:
        if ph.get("rate"):
            kind = "broker SIGKILLed" if ph.get("fault") else "healthy"
            return f"{kind}\n(paced {ph['rate']:,.0f}/s)"
        return {
            "healthy": "healthy\n(pre-encoded)",
            "healthy_live_generation": "healthy\n(live generation)",
            "as_users_run_it": "clickguard produce\n(as users run it)",
        }.get(ph["name"], ph["name"].replace("broker_", "broker\n"))

    phases = result["phases"]
    fast = [ph for ph in phases if not ph.get("rate")]  # throughput only where unpaced
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = list(range(len(fast)))
    ax1.bar([i - 0.2 for i in x], [ph["ours"]["throughput_eps"] for ph in fast], width=0.4,
            label="clickguard produce")
    ax1.bar([i + 0.2 for i in x], [ph.get("kcat", {}).get("throughput_eps") or 0 for ph in fast],
            width=0.4, label="kcat (same records)")
    ax1.axhline(4819, color="grey", linestyle="--", linewidth=1, label="original (4,819/s)")
    ax1.axhline(150_000, color="green", linestyle=":", linewidth=1,
                label="target as users run it (150,000/s)")
    ax1.set_xticks(x, [label(ph) for ph in fast])
    ax1.set_ylabel("events/s (acks=all, idempotent)")
    ax1.set_title("Throughput")
    ax1.legend(fontsize=8)
    x = list(range(len(phases)))
    for j, pct in enumerate(("p50", "p95", "p99")):
        vals = [ph["ours"]["latency_ms"].get(pct, 0) for ph in phases]
        ax2.bar([i + (j - 1) * 0.27 for i in x], vals, width=0.27, label=pct)
    ax2.set_xticks(x, [label(ph) for ph in phases])
    ax2.set_ylabel("delivery latency, produce() -> ack (ms)")
    ax2.set_title("Delivery latency (ours, every record)")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Producer benchmark, {result['records_per_phase']:,} records/phase, "
                 f"{result['machine']['cpus']} CPUs")
    fig.tight_layout()
    return write_results(out, "bench-producer", result, render_markdown(result), {"": fig})
