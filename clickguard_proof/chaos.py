"""`clickguard chaos SCENARIO`: break one part of the running platform under steady load, then
measure how long it took to recover (RTO) and reconcile every acknowledged event (RPO).

Per scenario:

1. Wait until the stream has committed everything already in the raw topic (a clean baseline).
2. Start the producer (``clickguard_producer.core.produce``) at a fixed rate, without injected
   faults, writing its acknowledged ledger; sample consumer lag every ``chaos_sample_s``.
3. After the warm-up, inject the fault through ``clickguard_stack.manager.Stack``:
   ``broker-kill`` (SIGKILL the leader of the most raw-topic partitions, restart), ``broker-bounce``
   (clean restarts of the current leader, waiting for a full ISR in between), ``broker-pause``
   (SIGSTOP, then SIGCONT), ``registry`` (stop, start), ``postgres`` (immediate shutdown = no
   checkpoint, crash recovery on start), ``streaming-kill`` (SIGKILL the ACTIVE streaming driver
   and its JVM mid-batch, ``--kills N`` times; the warm standby takes the lease over and resumes
   from the checkpoint), ``streaming-pause`` (SIGSTOP the active driver's tree for ``pause_s``,
   then SIGCONT: the standby takes over and the woken driver must commit nothing — fencing),
   ``api`` (SIGKILL the API, start), ``stack-crash`` (every process of every running node
   frozen, then SIGKILLed at once — a power cut of user space: PostgreSQL and the three brokers
   without a clean shutdown, both streaming drivers — and the same nodes started again with
   ``clickguard stack up``); ``random`` (``--faults N`` faults of the kinds above drawn from
   ``--seed``, each at a random moment, several nodes at once among them, everything brought
   back with ``clickguard stack up`` after each: no fault is timed to suit the pipeline).
4. Keep the load on until the pipeline has recovered (plus ``chaos_observe_s``), stop the producer,
   wait until the stream committed every acknowledged offset, and reconcile.

RTO is reported two ways: the first commit after the fault TOOK EFFECT (``effect_at``: the
SIGKILL/stop/SIGSTOP itself, not the start of the fault routine) — for streaming-kill/-pause the
first batch committed by the successor driver (``batch_ledger.driver``), for the others the first
commit of an event of this run produced after ``effect_at`` (``min(commit_ts)`` with ``ingest_ts``
and ``commit_ts ≥ effect_at``, so a batch in flight before the fault cannot satisfy it) — and
fault → lag back to
normal (the first sample after the last one above ``max(1.5 × warm-up max lag, load × max(1 s,
2 × median batch cycle))`` or unreadable). RPO = lost / duplicated / extra from
:mod:`clickguard_proof.reconcile`, each must be 0.
Producer-side latency during the fault is the produce→Kafka stage (broker append time − producer
time) of every event produced in the fault window, plus the producer's own delivery-report
percentiles over the whole run.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import psycopg

from clickguard import db, procs, stream_state
from clickguard import kafka as kafka_helpers
from clickguard.cli_types import POSITIVE
from clickguard.settings import Settings, get_settings
from clickguard.slo import compute_slo
from clickguard_proof.reconcile import ledger_last_offsets, reconcile
from clickguard_proof.report import Report
from clickguard_proof.stream import LagMonitor, Sample, wait_caught_up, wait_committed
from clickguard_stack.manager import INFRA, Stack

SCENARIOS = (
    "broker-kill", "broker-bounce", "broker-pause", "registry", "postgres", "streaming-kill",
    "streaming-pause", "api", "stack-crash",
)
STREAMING_SCENARIOS = ("streaming-kill", "streaming-pause")
RANDOM = "random"  # not part of `all`: its length is --faults, not one fault
# the faults `random` draws from: a broker SIGKILLed or SIGSTOPped, the active driver (mid
# whatever it is doing), the warm standby, the streaming node with both drivers, PostgreSQL
# without a shutdown checkpoint, the registry, and a broker and the active driver together
RANDOM_KINDS = ("broker-kill", "broker-pause", "driver-kill", "standby-kill", "streaming-node-kill",
                "postgres", "registry", "broker-and-driver")
RANDOM_GAP_S = (3.0, 25.0)  # since the previous fault's recovery
RANDOM_DOWN_S = (0.0, 10.0)  # a killed node stays down this long before `stack up`
RANDOM_PAUSE_S = (2.0, 20.0)  # a SIGSTOPped broker sleeps this long
Echo = Callable[[str], None]


@dataclass(frozen=True)
class ChaosConfig:
    """Timings and load of a chaos run (full defaults from settings; ``short()`` for CI)."""

    rate: float
    warmup_s: float
    fault_s: float
    observe_s: float
    recover_timeout_s: float
    sample_s: float
    pause_s: float = 30.0
    bounces: int = 5
    seed: int = 1
    kills: int = 1  # streaming-kill: SIGKILLs of the active driver in one run (takeover p50/max)
    faults: int = 20  # random: faults in one run

    @classmethod
    def from_settings(cls, s: Settings) -> ChaosConfig:
        return cls(
            rate=s.chaos_rate, warmup_s=s.chaos_warmup_s, fault_s=s.chaos_fault_s,
            observe_s=s.chaos_observe_s, recover_timeout_s=s.chaos_recover_timeout_s,
            sample_s=s.chaos_sample_s,
        )

    def short(self) -> ChaosConfig:
        """CI mode: lighter load, shorter phases, 2 bounces, a 10 s pause."""
        return replace(
            self, rate=min(self.rate, 500.0), warmup_s=6.0, fault_s=3.0, observe_s=2.0,
            pause_s=10.0, bounces=2,
        )


@dataclass
class ScenarioResult:
    scenario: str
    target: str | None = None
    run_id: str = ""
    skipped: str | None = None
    fault_at: datetime | None = None
    effect_at: datetime | None = None  # when the fault took effect (first kill/stop/SIGSTOP)
    fault_end_at: datetime | None = None
    fault_s: float | None = None
    rto_first_event_s: float | None = None
    rto_lag_s: float | None = None
    rto_service_s: float | None = None  # api: kill -> /health answers again
    baseline_max_lag: int | None = None
    batch_cycle_s: float | None = None  # median time between commits before the fault
    normal_lag: int | None = None
    max_lag: int | None = None
    producer: dict[str, Any] = field(default_factory=dict)
    during_fault_ms: dict[str, Any] = field(default_factory=dict)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    killed_pids: list[int] = field(default_factory=list)
    restarted_pid: int | None = None
    marks: list[tuple[float, str]] = field(default_factory=list)  # (t since start, what)
    # random: each fault that took effect, {"t", "at", "what"} and its own RTOs (_measure)
    faults: list[dict[str, Any]] = field(default_factory=list)
    lag_series: list[tuple[float, int | None]] = field(default_factory=list)
    fault_t: float | None = None
    fault_end_t: float | None = None
    # streaming-kill/-pause: one entry per fault (killed/paused driver, successor, seconds)
    takeovers: list[dict[str, Any]] = field(default_factory=list)
    takeover_p50_s: float | None = None
    takeover_max_s: float | None = None
    fenced_commits: int | None = None  # streaming-pause: commits of the paused driver after
    fenced_exit: bool | None = None  # the takeover (must be 0); did it exit once woken

    @property
    def ok(self) -> bool:
        r = self.reconciliation
        ok = self.skipped is None and bool(r) and r.get("ok", False) and (
            self.rto_first_event_s is not None
        )
        if self.scenario in STREAMING_SCENARIOS:
            ok = ok and bool(self.takeovers) and all(
                t.get("takeover_s") is not None for t in self.takeovers)
        if self.scenario == "streaming-pause":
            ok = ok and self.fenced_commits == 0
        return ok

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def leader_of_most(settings: Settings) -> str:
    """kafka-N leading the most partitions of the raw topic (its loss hurts most)."""
    md = kafka_helpers.admin(settings).list_topics(settings.topic_raw, timeout=10)
    leaders: dict[int, int] = {}
    for p in md.topics[settings.topic_raw].partitions.values():
        if p.leader >= 0:
            leaders[p.leader] = leaders.get(p.leader, 0) + 1
    return f"kafka-{max(sorted(leaders), key=lambda n: leaders[n])}"


def wait_full_isr(settings: Settings, timeout: float) -> bool:
    def ready() -> bool:
        try:
            return kafka_helpers.cluster_health(settings).ready(settings.kafka_nodes)
        except Exception:  # noqa: BLE001 - a restarting broker answers nothing for a while
            return False

    return procs.wait_until(ready, timeout, interval=0.5)


def streaming_job_pid(settings: Settings) -> int | None:
    """The ACTIVE streaming driver's pid (it writes ``job.pid`` once it holds the lease)."""
    try:
        pid = int((settings.home / "streaming" / "job.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if procs.is_alive(pid) else None


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and all its descendants (a crash of the whole process tree)."""
    return kill_trees([pid])


def kill_trees(pids: list[int]) -> list[int]:
    """SIGKILL the trees of ``pids`` at once; returns every pid killed.

    Every process is first stopped (SIGSTOP), so none sees another die and reacts (a broker
    starting a controlled shutdown, the supervisor starting a driver, PostgreSQL's postmaster
    cleaning up after a backend): all of them die in the state they were in.
    """
    table = procs.ProcTable.read()  # one walk of /proc for every tree
    victims = [q for p in pids for q in (p, *table.descendants(p))]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for p in victims:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
    if not procs.wait_dead(victims, 15):
        raise RuntimeError(f"processes {victims} survived SIGKILL")
    return victims


def health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001 - down is an answer here
        return False


def delivered_since(settings: Settings, run_id: str, since: datetime) -> bool:
    """Has any event of this run produced at/after ``since`` been committed? (False if DB down)"""
    try:
        with db.connect(settings, "reader", autocommit=True) as conn:
            return conn.execute(
                "SELECT 1 FROM events WHERE commit_ts >= %s AND ingest_ts >= %s "
                "AND event_id LIKE %s LIMIT 1", (since, since, f"{run_id}-%"),
            ).fetchone() is not None
    except Exception:  # noqa: BLE001 - the database may be the thing still recovering
        return False


def batch_cycle(settings: Settings, last: int = 20) -> float:
    """Median seconds between the last ``last`` batch commits (0 when unknown)."""
    with db.connect(settings, "reader", autocommit=True) as conn:
        ts = [r[0] for r in conn.execute(
            "SELECT committed_at FROM batch_ledger WHERE input_rows > 0 "
            "ORDER BY committed_at DESC LIMIT %s", (last + 1,)
        )]
    gaps = sorted((a - b).total_seconds() for a, b in itertools.pairwise(ts))
    return round(gaps[len(gaps) // 2], 3) if gaps else 0.0


# ---------------------------------------------------------------------------------------------
# faults: each returns when the fault is over (the node is back); `mark` timestamps steps
# ---------------------------------------------------------------------------------------------
@dataclass
class FaultContext:
    stack: Stack
    settings: Settings
    cfg: ChaosConfig
    result: ScenarioResult
    mark: Callable[[str], float]  # records a step, returns its t (s since the load started)
    echo: Echo

    began: datetime | None = None  # the latest begin(): random's clock of each fault

    def begin(self) -> None:
        """The fault takes effect NOW (the RTO clock starts); the first call wins the scenario's
        clock, each call starts the clock of the fault it begins."""
        self.began = datetime.now(UTC)
        if self.result.effect_at is None:
            self.result.effect_at = self.began


def _broker_kill(ctx: FaultContext) -> None:
    name = ctx.result.target = leader_of_most(ctx.settings)
    pid = ctx.stack.node(name).pid()
    ctx.begin()
    ctx.stack.control("kill", name)
    ctx.result.killed_pids = [pid] if pid else []
    ctx.mark(f"SIGKILL {name}")
    time.sleep(ctx.cfg.fault_s)
    ctx.stack.control("start", name)
    ctx.result.restarted_pid = ctx.stack.node(name).pid()
    ctx.mark(f"{name} restarted")


def _broker_bounce(ctx: FaultContext) -> None:
    names = []
    for i in range(ctx.cfg.bounces):
        name = leader_of_most(ctx.settings)
        names.append(name)
        ctx.begin()
        ctx.stack.control("stop", name)
        ctx.mark(f"stop {name} ({i + 1}/{ctx.cfg.bounces})")
        ctx.stack.control("start", name)
        if not wait_full_isr(ctx.settings, ctx.cfg.recover_timeout_s):
            ctx.echo(f"  warning: ISR not full {ctx.cfg.recover_timeout_s:.0f}s after {name}")
        ctx.mark(f"{name} back, ISR full")
    ctx.result.target = ",".join(names)


def _broker_pause(ctx: FaultContext) -> None:
    name = ctx.result.target = leader_of_most(ctx.settings)
    ctx.begin()
    ctx.stack.control("pause", name)
    ctx.mark(f"SIGSTOP {name}")
    time.sleep(ctx.cfg.pause_s)
    ctx.stack.control("resume", name)
    ctx.mark(f"SIGCONT {name}")


def _registry(ctx: FaultContext) -> None:
    ctx.result.target = "registry"
    ctx.begin()
    ctx.stack.control("stop", "registry")
    ctx.mark("registry stopped")
    time.sleep(ctx.cfg.fault_s)
    ctx.stack.control("start", "registry")
    ctx.mark("registry started")


def _postgres(ctx: FaultContext) -> None:
    ctx.result.target = "postgres"
    node = ctx.stack.node("postgres")
    pid = node.pid()
    ctx.begin()
    node.stop(mode="immediate")  # type: ignore[call-arg]  # PostgresNode: no shutdown checkpoint
    ctx.result.killed_pids = [pid] if pid else []
    ctx.mark("postgres immediate stop")
    time.sleep(ctx.cfg.fault_s)
    ctx.stack.control("start", "postgres")
    ctx.result.restarted_pid = node.pid()
    ctx.mark("postgres started")


def lease_holder(settings: Settings) -> tuple[str | None, int | None, datetime | None]:
    """(holder, epoch, acquired_at) of the stream's lease (streaming_job.lease), if any."""
    name = str(settings.checkpoint_dir.resolve())
    with db.connect(settings, "reader", autocommit=True) as conn:
        row = conn.execute(
            "SELECT holder, epoch, acquired_at FROM stream_lease WHERE name = %s", (name,)
        ).fetchone()
    return (row[0], int(row[1]), row[2]) if row else (None, None, None)


def successor_commit(
    settings: Settings, old_holder: str | None, since: datetime
) -> tuple[datetime, str, int | None] | None:
    """First batch committed at/after ``since`` by a driver other than ``old_holder``."""
    try:
        with db.connect(settings, "reader", autocommit=True) as conn:
            row = conn.execute(
                "SELECT committed_at, driver, driver_epoch FROM batch_ledger "
                "WHERE committed_at >= %s AND driver IS NOT NULL AND driver IS DISTINCT FROM %s "
                "ORDER BY committed_at LIMIT 1", (since, old_holder),
            ).fetchone()
    except Exception:  # noqa: BLE001 - unreadable now: ask again
        return None
    return (row[0], row[1], row[2]) if row else None


def warm_standby(settings: Settings, exclude: set[int]) -> dict[str, Any] | None:
    """A live standby driver that finished a warm-up round (not one of ``exclude``); it read
    only ``warm`` ("ready"), so a kill could come before the successor's first round and the
    takeover measured a half-cold driver (7.6 s against 2-4 s)."""
    for d in stream_state.read_drivers(settings.home / "streaming"):
        if stream_state.is_warm_standby(d) and d.get("pid") not in exclude:
            return d
    return None


def _active_driver(ctx: FaultContext) -> tuple[int, str | None, int | None]:
    """(pid, lease holder, epoch) of the active driver, once it committed a batch as such."""
    deadline = time.monotonic() + ctx.cfg.recover_timeout_s
    while True:
        pid = streaming_job_pid(ctx.settings)
        holder, epoch, _ = lease_holder(ctx.settings)
        if pid is not None and holder and f":{pid}@" in holder:
            return pid, holder, epoch
        if time.monotonic() > deadline:
            raise RuntimeError("no active streaming driver (job.pid / stream_lease)")
        time.sleep(0.2)


def _wait_mid_batch(ctx: FaultContext) -> None:
    """Until a new ledger row was just committed, plus half a median batch: mid-batch."""
    with db.connect(ctx.settings, "reader", autocommit=True) as conn:
        def last_batch() -> tuple[Any, ...]:
            return conn.execute(
                "SELECT max(committed_at), percentile_cont(0.5) WITHIN GROUP "
                "(ORDER BY duration_ms) FROM (SELECT * FROM batch_ledger "
                "ORDER BY committed_at DESC LIMIT 20) b"
            ).fetchone() or (None, None)

        before, median_ms = last_batch()
        procs.wait_until(lambda: last_batch()[0] != before, 30, interval=0.05)
    time.sleep(min(((median_ms or 200) / 2) / 1000.0, 2.0))


def _await_successor(
    ctx: FaultContext, takeover: dict[str, Any], at: datetime, until: float
) -> bool:
    """Fill ``takeover`` with the successor's first commit (False if none before ``until``)."""
    while time.monotonic() < until:
        found = successor_commit(ctx.settings, takeover["holder"], at)
        if found:
            first, successor, epoch = found
            takeover.update(successor=successor, successor_epoch=epoch,
                            takeover_s=round((first - at).total_seconds(), 3))
            return True
        time.sleep(0.2)
    return False


def _streaming_kill(ctx: FaultContext) -> None:
    """SIGKILL the ACTIVE driver (Python + its Spark JVM) mid-batch, ``kills`` times; each
    takeover = SIGKILL → first batch committed by another driver (the ledger's driver column).
    Between kills, wait until a standby is warm again (else the next kill measures a cold
    restart)."""
    ctx.result.target = "streaming"
    for i in range(ctx.cfg.kills):
        pid, holder, epoch = _active_driver(ctx)
        if i and ctx.settings.stream_drivers > 1:
            killed = {k for t in ctx.result.takeovers for k in t["killed_pids"]}

            def standby_ready(k: set[int] = killed) -> bool:
                return warm_standby(ctx.settings, k) is not None

            if not procs.wait_until(standby_ready, ctx.cfg.recover_timeout_s, interval=0.5):
                ctx.echo("  warning: no warm standby before the next kill")
        _wait_mid_batch(ctx)
        at = datetime.now(UTC)
        ctx.begin()
        victims = kill_tree(pid)
        ctx.result.killed_pids += victims
        takeover: dict[str, Any] = {"kill": i + 1, "killed_pids": victims, "holder": holder,
                                    "epoch": epoch, "at": at.isoformat(), "takeover_s": None}
        ctx.result.takeovers.append(takeover)
        ctx.mark(f"SIGKILL active driver {pid} (epoch {epoch}) + {len(victims) - 1} child(ren)"
                 f" [{i + 1}/{ctx.cfg.kills}]")
        if not _await_successor(ctx, takeover, at, time.monotonic() + ctx.cfg.recover_timeout_s):
            raise RuntimeError("no other driver committed a batch after the SIGKILL")
        ctx.mark(f"successor {takeover['successor']} (epoch {takeover['successor_epoch']}) "
                 f"committed: takeover {takeover['takeover_s']}s")
    ctx.result.restarted_pid = streaming_job_pid(ctx.settings)


def _streaming_pause(ctx: FaultContext) -> None:
    """SIGSTOP the active driver's whole tree (a long GC / VM freeze), SIGCONT it after
    ``pause_s``: the standby takes over on lease expiry and the woken driver must commit
    nothing (fencing) and exit to become a standby again."""
    ctx.result.target = "streaming"
    pid, holder, epoch = _active_driver(ctx)
    _wait_mid_batch(ctx)
    pause = max(ctx.cfg.pause_s, 3 * ctx.settings.stream_lease_ttl_s)
    at = datetime.now(UTC)
    ctx.begin()
    tree = [pid, *procs.descendants(pid)]
    procs.send(pid, signal.SIGSTOP, tree=True)
    ctx.result.killed_pids = tree
    takeover: dict[str, Any] = {"paused_pid": pid, "holder": holder, "epoch": epoch,
                                "at": at.isoformat(), "takeover_s": None}
    ctx.result.takeovers.append(takeover)
    ctx.mark(f"SIGSTOP active driver {pid} (epoch {epoch}) + {len(tree) - 1} child(ren)")
    t0 = time.monotonic()
    try:
        if _await_successor(ctx, takeover, at, t0 + pause):
            ctx.mark(f"successor {takeover['successor']} committed while {pid} sleeps: "
                     f"takeover {takeover['takeover_s']}s")
        time.sleep(max(0.0, t0 + pause - time.monotonic()))
    finally:
        procs.send(pid, signal.SIGCONT, tree=True)
    ctx.mark(f"SIGCONT {pid} after {time.monotonic() - t0:.0f}s")
    new_holder, new_epoch, acquired = lease_holder(ctx.settings)
    takeover["lease_after"] = {"holder": new_holder, "epoch": new_epoch,
                               "acquired_at": acquired.isoformat() if acquired else None}
    ctx.result.fenced_exit = procs.wait_until(lambda: not procs.is_alive(pid), 60, interval=0.2)
    ctx.mark(f"woken driver {pid} " + ("exited (fenced)" if ctx.result.fenced_exit
                                       else "still running"))
    if takeover["takeover_s"] is None:
        _await_successor(ctx, takeover, at, time.monotonic() + ctx.cfg.recover_timeout_s)
    ctx.result.restarted_pid = streaming_job_pid(ctx.settings)


def _api(ctx: FaultContext) -> None:
    ctx.result.target = "api"
    node = ctx.stack.node("api")
    url = f"http://{ctx.settings.api_host}:{ctx.settings.api_port}/health"
    pid = node.pid()
    if pid is None:
        raise RuntimeError("node `api` is not running")
    # the whole tree: SIGKILL of the uvicorn master alone leaves its workers serving the port
    ctx.begin()
    victims = kill_tree(pid)
    t0 = time.monotonic()
    ctx.result.killed_pids = victims
    ctx.mark(f"SIGKILL api {pid} + {len(victims) - 1} worker(s)")
    time.sleep(ctx.cfg.fault_s)
    ctx.stack.control("start", "api")
    procs.wait_until(lambda: health_ok(url), ctx.cfg.recover_timeout_s)
    ctx.result.rto_service_s = round(time.monotonic() - t0 - ctx.cfg.fault_s, 2)
    ctx.result.restarted_pid = node.pid()
    ctx.mark("api answers /health")


def crash_nodes(stack: Stack, names: Iterable[str] | None = None) -> tuple[list[str], list[int]]:
    """SIGKILL every process of every running node of ``names`` (default: all) at once, each
    node's main process with its whole tree; returns (nodes, pids)."""
    running = {name: pid for name in (stack.nodes if names is None else names)
               if (pid := stack.node(name).pid()) is not None}
    return list(running), kill_trees(list(running.values()))


def crash_streaming_node(stack: Stack) -> list[int]:
    """SIGKILL the streaming supervisor with both drivers (a cold start follows); `stack kill
    streaming` kills only the running job, which the warm standby replaces. [] = not running."""
    return crash_nodes(stack, ["streaming"])[1]


def _stack_crash(ctx: FaultContext) -> None:
    ctx.begin()
    names, victims = crash_nodes(ctx.stack)
    ctx.result.target = ",".join(names)
    ctx.result.killed_pids = victims
    ctx.mark(f"SIGKILL of {len(victims)} processes of {len(names)} nodes")
    time.sleep(ctx.cfg.fault_s)
    seconds = ctx.stack.up(names, timeout=ctx.cfg.recover_timeout_s)
    ctx.result.restarted_pid = ctx.stack.node("streaming").pid()
    ctx.mark(f"stack up again ({seconds:.1f} s)")


@dataclass(frozen=True)
class PlannedFault:
    """One fault of ``random``: ``gap_s`` after the previous recovery, node down ``down_s``."""

    gap_s: float
    kind: str
    broker: str  # the kafka-N of the broker kinds
    down_s: float


def random_plan(seed: int, faults: int) -> list[PlannedFault]:
    """The schedule of ``random``, the same for the same seed (a failure can be replayed)."""
    rng = random.Random(seed)
    plan = []
    for _ in range(faults):
        kind = rng.choice(RANDOM_KINDS)
        down = RANDOM_PAUSE_S if kind == "broker-pause" else RANDOM_DOWN_S
        plan.append(PlannedFault(gap_s=round(rng.uniform(*RANDOM_GAP_S), 2), kind=kind,
                                 broker=f"kafka-{rng.randint(1, 3)}",
                                 down_s=round(rng.uniform(*down), 2)))
    return plan


def _random(ctx: FaultContext) -> None:
    plan = random_plan(ctx.cfg.seed, ctx.cfg.faults)
    ctx.result.target = f"{len(plan)} faults, seed {ctx.cfg.seed}"

    def hit(label: str) -> None:
        """A fault that took effect: a mark, a line in the plot and a row with its own RTOs."""
        at = (ctx.began or datetime.now(UTC)).isoformat()  # as the scenario's own RTO clock
        ctx.result.faults.append({"t": ctx.mark(label), "at": at, "what": label})

    for i, f in enumerate(plan, 1):
        time.sleep(f.gap_s)
        ctx.begin()
        tag = f"#{i}/{len(plan)} {f.kind}:"
        if f.kind == "broker-pause":
            ctx.stack.control("pause", f.broker)
            hit(f"{tag} SIGSTOP {f.broker}")
            time.sleep(f.down_s)
            ctx.stack.control("resume", f.broker)
            ctx.mark(f"{tag} SIGCONT {f.broker} after {f.down_s:.1f} s")
            continue
        if f.kind in ("broker-kill", "broker-and-driver"):
            pid = ctx.stack.node(f.broker).pid()
            ctx.stack.control("kill", f.broker)
            ctx.result.killed_pids += [pid] if pid else []
            hit(f"{tag} SIGKILL {f.broker}")
        if f.kind in ("driver-kill", "broker-and-driver"):
            pid = streaming_job_pid(ctx.settings)
            if pid is None:  # a takeover in progress: nothing active to kill right now
                ctx.mark(f"{tag} no active driver at this moment")
            else:
                ctx.begin()  # at the kill itself (broker-and-driver: not at the broker's kill)
                ctx.result.killed_pids += kill_tree(pid)
                hit(f"{tag} SIGKILL active driver {pid}")
        if f.kind == "standby-kill":
            standby = warm_standby(ctx.settings, set())
            if standby is None:
                ctx.mark(f"{tag} no warm standby at this moment")
            else:
                ctx.result.killed_pids += kill_tree(int(standby["pid"]))
                hit(f"{tag} SIGKILL standby driver {standby['pid']}")
        if f.kind == "streaming-node-kill":
            victims = crash_streaming_node(ctx.stack)
            if not victims:
                ctx.mark(f"{tag} the streaming node is not running at this moment")
            else:
                ctx.result.killed_pids += victims
                hit(f"{tag} SIGKILL the streaming node (supervisor and both drivers)")
        if f.kind == "postgres":
            ctx.stack.node("postgres").stop(mode="immediate")  # type: ignore[call-arg]
            hit(f"{tag} postgres immediate stop")
        if f.kind == "registry":
            ctx.stack.control("kill", "registry")
            hit(f"{tag} SIGKILL registry")
        time.sleep(f.down_s)
        seconds = ctx.stack.up(needed_nodes(RANDOM), timeout=ctx.cfg.recover_timeout_s)
        ctx.mark(f"{tag} every node up again after {f.down_s:.1f} s down ({seconds:.1f} s)")
    ctx.result.restarted_pid = streaming_job_pid(ctx.settings)


FAULTS: dict[str, Callable[[FaultContext], None]] = {
    "broker-kill": _broker_kill,
    "broker-bounce": _broker_bounce,
    "broker-pause": _broker_pause,
    "registry": _registry,
    "postgres": _postgres,
    "streaming-kill": _streaming_kill,
    "streaming-pause": _streaming_pause,
    "api": _api,
    "stack-crash": _stack_crash,
    RANDOM: _random,
}


def needed_nodes(scenario: str) -> list[str]:
    return [*INFRA, "streaming", *(["api"] if scenario == "api" else [])]


# ---------------------------------------------------------------------------------------------
# one scenario under load
# ---------------------------------------------------------------------------------------------
def run_scenario(
    settings: Settings, scenario: str, cfg: ChaosConfig, work_dir: Path, echo: Echo = print
) -> ScenarioResult:
    """Load → fault → recovery → reconciliation for one scenario."""
    from clickguard_producer.core import produce, register_schemas
    from clickguard_producer.faults import FaultInjector
    from clickguard_producer.generator import Generator, GeneratorConfig

    run_id = f"chaos-{scenario}-{uuid.uuid4().hex[:8]}"
    result = ScenarioResult(scenario=scenario, run_id=run_id)
    stack = Stack(settings, echo=lambda _m: None)
    if scenario == "api" and "api" not in stack.resolve(None):
        result.skipped = "the API code (api.serve) is not in this checkout"
        return result
    echo(f"[{scenario}] making sure {', '.join(needed_nodes(scenario))} are up")
    stack.up(needed_nodes(scenario), timeout=cfg.recover_timeout_s)
    if not wait_full_isr(settings, cfg.recover_timeout_s):
        raise RuntimeError("Kafka partitions lack a full ISR before the scenario")
    if not wait_caught_up(settings, cfg.recover_timeout_s, echo):
        raise RuntimeError("the stream did not catch up with the raw topic before the scenario")

    schema_id, _ = register_schemas(settings)
    gen = Generator(GeneratorConfig(seed=cfg.seed, run_id=run_id, anomaly_every=0))
    injector = FaultInjector(schema_id, watermark_minutes=settings.stream_watermark_minutes)
    records = injector.records(gen.events())
    work_dir.mkdir(parents=True, exist_ok=True)
    ledger = work_dir / f"{run_id}.ledger.tsv"
    stop = threading.Event()
    summary_box: dict[str, Any] = {}

    def load() -> None:
        try:
            summary_box["summary"] = produce(
                settings, records, rate=cfg.rate, ledger=ledger, progress=None, stop=stop,
                flush_timeout=cfg.recover_timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - reported in the result, never swallowed
            summary_box["error"] = repr(exc)

    monitor = LagMonitor(settings, interval=cfg.sample_s).start()
    t_load = monitor.elapsed()
    producer = threading.Thread(target=load, name=f"chaos-load-{scenario}", daemon=True)
    producer.start()

    def mark(label: str) -> float:
        t = round(monitor.elapsed(), 2)
        result.marks.append((t, label))
        echo(f"[{scenario}] t={t:6.1f}s {label}")
        return t

    mark(f"load started at {cfg.rate:,.0f} events/s")
    time.sleep(cfg.warmup_s)
    warm = [s.lag for s in monitor.since(t_load + cfg.warmup_s / 2) if s.lag is not None]
    result.baseline_max_lag = max(warm) if warm else 0
    # committed lag is a sawtooth (it only falls when a batch commits): "normal" must allow
    # two batch cycles of load, whatever the warm-up happened to see
    result.batch_cycle_s = batch_cycle(settings)
    result.normal_lag = int(max(
        1.5 * (result.baseline_max_lag or 0), cfg.rate * max(1.0, 2 * result.batch_cycle_s)
    ))
    result.fault_at = datetime.now(UTC)
    result.fault_t = monitor.elapsed()
    ctx = FaultContext(stack, settings, cfg, result, mark, echo)
    try:
        FAULTS[scenario](ctx)
    finally:
        result.fault_end_at = datetime.now(UTC)
        result.fault_end_t = monitor.elapsed()
        result.fault_s = round(result.fault_end_t - result.fault_t, 2)

    # keep the load on until events produced after the fault are committed again and the lag
    # is back to normal, then observe a little longer
    deadline = time.monotonic() + cfg.recover_timeout_s
    delivered = False
    while time.monotonic() < deadline:
        if not delivered and delivered_since(settings, run_id, result.fault_end_at):
            delivered = True
            mark("events produced after the fault are committed again")
        recent = monitor.since(monitor.elapsed() - 2 * cfg.sample_s)
        if delivered and recent and all(
            s.lag is not None and s.lag <= result.normal_lag for s in recent
        ):
            break
        time.sleep(cfg.sample_s)
    mark("lag back to normal" if time.monotonic() < deadline else "NOT recovered in time")
    time.sleep(cfg.observe_s)
    stop.set()
    producer.join(timeout=cfg.recover_timeout_s + 30)
    mark("load stopped")
    if "error" in summary_box:
        raise RuntimeError(f"producer failed: {summary_box['error']}")
    summary = summary_box["summary"]
    result.producer = {
        "sent": summary.sent, "acknowledged": summary.acknowledged, "failed": summary.failed,
        "throughput_eps": summary.throughput_eps, "delivery_latency_ms": summary.latency_ms,
        "errors": summary.errors,
    }
    committed = wait_committed(
        settings, ledger_last_offsets(ledger), cfg.recover_timeout_s, echo
    )
    mark("stream committed every acknowledged offset" if committed else "stream did NOT catch up")
    time.sleep(2 * cfg.sample_s)
    monitor.stop()
    _measure(settings, result, monitor.samples, ledger)
    return result


def rto_lag(samples: list[Sample], fault_t: float, normal: int,
            until: float | None = None) -> float | None:
    """Seconds from the fault to the first sample after the last abnormal one (lag above
    ``normal`` or unreadable); 0 if none was abnormal, None if it never recovered (before
    ``until``, the next fault's t, when given) or no sample was taken before it (a second
    fault 0.2 s later: "never abnormal" would be a guess)."""
    after = [s for s in samples if s.t >= fault_t and (until is None or s.t < until)]
    if not after:
        return None
    bad = [i for i, s in enumerate(after) if s.lag is None or s.lag > normal]
    if not bad:
        return 0.0
    if bad[-1] + 1 < len(after):
        return round(after[bad[-1] + 1].t - fault_t, 2)
    return None


def first_commit_after(conn: psycopg.Connection, run_id: str, effect: datetime) -> float | None:
    """Seconds from ``effect`` to the first commit AFTER it of an event produced after it: a
    batch that was in flight when the fault began cannot satisfy this."""
    row = conn.execute(
        "SELECT min(commit_ts) FROM events WHERE event_id LIKE %s AND ingest_ts >= %s "
        "AND commit_ts >= %s", (f"{run_id}-%", effect, effect),
    ).fetchone()
    return round((row[0] - effect).total_seconds(), 3) if row and row[0] is not None else None


def _measure(settings: Settings, result: ScenarioResult, samples: list[Sample],
             ledger: Path) -> None:
    """RTOs, lag, fault-window latency and the reconciliation, from samples and the database."""
    assert result.fault_at is not None and result.fault_end_at is not None
    assert result.fault_t is not None
    result.lag_series = [(s.t, s.lag) for s in samples]
    after = [s for s in samples if s.t >= result.fault_t]
    lags = [s.lag for s in after if s.lag is not None]
    result.max_lag = max(lags) if lags else None
    result.rto_lag_s = rto_lag(samples, result.fault_t, result.normal_lag or 0)
    effect = result.effect_at or result.fault_at
    result.effect_at = effect
    times = sorted(t["takeover_s"] for t in result.takeovers if t.get("takeover_s") is not None)
    if times:
        result.takeover_p50_s = round(statistics.median(times), 3)
        result.takeover_max_s = times[-1]
    with db.connect(settings, "writer", autocommit=True) as conn:
        for k, f in enumerate(result.faults):  # random: each fault's own RTOs
            at = datetime.fromisoformat(f["at"])
            until = result.faults[k + 1]["t"] if k + 1 < len(result.faults) else None
            f["rto_first_commit_s"] = first_commit_after(conn, result.run_id, at)
            f["rto_lag_normal_s"] = rto_lag(samples, f["t"], result.normal_lag or 0, until)
        if result.scenario in STREAMING_SCENARIOS:
            # the successor's first committed batch after the (first) kill/SIGSTOP
            first = result.takeovers[0].get("takeover_s") if result.takeovers else None
            result.rto_first_event_s = first
        else:
            result.rto_first_event_s = first_commit_after(conn, result.run_id, effect)
        if result.scenario == "streaming-pause" and result.takeovers:
            t = result.takeovers[0]
            acquired = (t.get("lease_after") or {}).get("acquired_at")
            if t.get("lease_after", {}).get("epoch") not in (None, t["epoch"]) and acquired:
                # fencing: the paused driver committed nothing once the successor held the lease
                result.fenced_commits = db.one(
                    conn,
                    "SELECT count(*) FROM batch_ledger WHERE driver = %s AND committed_at >= %s",
                    (t["holder"], datetime.fromisoformat(acquired)),
                )[0]
        window = (result.fault_at, max(result.fault_end_at, result.fault_at + timedelta(seconds=1)))
        during = compute_slo(conn, window, column="ingest_ts", cdf=False,
                             event_id_prefix=f"{result.run_id}-")
        result.during_fault_ms = {
            "events": during.events,
            **{f"{stage}.{q}": getattr(st, q) for stage, st in during.stages.items()
               for q in ("p50", "p95", "p99", "max")},
        }
        rec = reconcile(conn, settings, ledger, run_id=result.run_id)
    result.reconciliation = rec.to_dict()


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def chaos_report(name: str, results: list[ScenarioResult], cfg: ChaosConfig) -> Report:
    rows = []
    for r in results:
        rec = r.reconciliation
        rows.append({
            "scenario": r.scenario, "target": r.target, "fault s": r.fault_s,
            "RTO first commit s": r.rto_first_event_s, "RTO lag normal s": r.rto_lag_s,
            "RTO service s": r.rto_service_s,
            "takeovers": len(r.takeovers) or None, "takeover p50 s": r.takeover_p50_s,
            "takeover max s": r.takeover_max_s, "fenced commits": r.fenced_commits,
            "max lag": r.max_lag, "acked": rec.get("acked"), "lost": rec.get("lost"),
            "duplicated": rec.get("duplicated"), "extra": rec.get("extra"),
            "failed sends": r.producer.get("failed"),
            "p99 produce→Kafka in fault ms": r.during_fault_ms.get("produce_to_kafka.p99"),
            "ok": r.ok if r.skipped is None else f"skipped: {r.skipped}",
        })
        for k, f in enumerate(r.faults, 1):  # random: a row per fault, with its own RTOs
            rows.append({**dict.fromkeys(rows[-1]), "scenario": f"{r.scenario} fault {k}",
                         "target": f"t = {f['t']:.1f} s: {f['what']}",
                         "RTO first commit s": f.get("rto_first_commit_s"),
                         "RTO lag normal s": f.get("rto_lag_normal_s")})

    def draw(fig: Any) -> None:
        shown = [r for r in results if r.lag_series]
        if not shown:
            return
        cols = min(2, len(shown))
        nrows = (len(shown) + cols - 1) // cols
        for i, r in enumerate(shown):
            ax = fig.add_subplot(nrows, cols, i + 1)
            ts = [t for t, _ in r.lag_series]
            ax.plot(ts, [lag if lag is not None else float("nan") for _, lag in r.lag_series],
                    lw=1, label="lag (records)")
            down = [t for t, lag in r.lag_series if lag is None]
            if down:
                ax.plot(down, [0] * len(down), "rx", ms=3, label="lag unreadable")
            if r.fault_t is not None and r.fault_end_t is not None:
                ax.axvspan(r.fault_t, r.fault_end_t, color="red", alpha=0.15, label="fault")
            if r.normal_lag:
                ax.axhline(r.normal_lag, color="grey", ls="--", lw=0.7, label="normal")
            # random: one line per fault that took effect (kill, stop, SIGSTOP)
            for k, f in enumerate(r.faults):
                ax.axvline(f["t"], color="red", lw=0.6, label="a fault" if k == 0 else None)
            ax.set_title(f"{r.scenario}: RTO {r.rto_first_event_s}s / {r.rto_lag_s}s, "
                         f"lost {r.reconciliation.get('lost')}", fontsize=9)
            ax.set_xlabel("s", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.legend(fontsize=7)

    return Report(
        name=name,
        title=f"Chaos under steady load ({cfg.rate:,.0f} events/s)",
        data={"config": asdict(cfg), "scenarios": [r.to_dict() for r in results]},
        rows=rows,
        notes=[
            "RTO first commit = from the moment the fault took effect (SIGKILL, stop, SIGSTOP) "
            "to the first commit after it: for streaming-kill/-pause the first batch committed "
            "by the successor driver (batch_ledger.driver), otherwise min(commit_ts) of this "
            "run's events with ingest_ts and commit_ts ≥ that moment. Takeover p50/max over "
            "every kill of the run (--kills N). Fenced commits (streaming-pause) = batches "
            "committed by the paused driver after its successor acquired the lease: must be 0. "
            "RTO lag normal = fault → first lag sample after the last one above "
            "normal = max(1.5 × warm-up max lag, load × max(1 s, 2 × median batch cycle)) or "
            "unreadable (lag = raw-topic end offsets − offsets committed in batch_ledger; it "
            "only falls when a batch commits, hence the batch-cycle allowance).",
            "RPO: every acknowledged event_id from the producer's ledger reconciled against the "
            "events table: lost (acked, not stored), duplicated (stored more than once, or "
            "acked twice at different offsets), extra (stored, never acked) — each must be 0.",
            "Producer latency during the fault = produce→Kafka stage (broker LogAppendTime − "
            "producer time) of every event produced during the fault window; the producer's own "
            "delivery-report percentiles over the whole run are in the JSON.",
            "random: --faults N faults drawn from --seed (the same seed replays the same "
            "schedule), each at a random moment; the scenario's row has the RTOs of its FIRST "
            "fault and a fault window spanning all of them; below it, one row per fault that "
            "took effect (a broker-and-driver fault is two) with that fault's own RTOs: first "
            "commit after it, and lag normal again before the next fault (– = not before it, or no "
            "lag sample between the two).",
            "Original: ~62 s recovery after a Spark, broker or Postgres failure, RPO 0 "
            "(stop/start then a smoke test, no reconciliation).",
        ],
        plot=draw,
        passed=all(r.ok for r in results if r.skipped is None),
    )


def run_chaos(
    settings: Settings, scenarios: list[str], cfg: ChaosConfig, echo: Echo = print
) -> list[ScenarioResult]:
    work = settings.home / "chaos"
    out: list[ScenarioResult] = []
    for sc in scenarios:
        r = run_scenario(settings, sc, cfg, work, echo)
        rec = r.reconciliation
        if r.skipped:
            line = f"skipped: {r.skipped}"
        else:
            line = f"RTO first commit {r.rto_first_event_s}s, lag normal {r.rto_lag_s}s; "
            if r.takeovers:
                line += (f"takeover p50 {r.takeover_p50_s}s max {r.takeover_max_s}s over "
                         f"{len(r.takeovers)}; ")
            if r.scenario == "streaming-pause":
                line += f"fenced commits {r.fenced_commits}; "
            line += (f"acked {rec.get('acked')}, lost {rec.get('lost')}, duplicated "
                     f"{rec.get('duplicated')}, extra {rec.get('extra')} -> "
                     f"{'OK' if r.ok else 'FAIL'}")
        echo(f"[{sc}] {line}")
        out.append(r)
    return out


@click.command("chaos")
@click.argument("scenario", type=click.Choice([*SCENARIOS, RANDOM, "all"]))
@click.option("--short", is_flag=True, help="CI mode: 500 ev/s, short phases, 2 bounces.")
@click.option("--rate", type=POSITIVE,
              default=None, help="Load in events/s (default chaos_rate).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--kills", type=click.IntRange(1, 100), default=1, show_default=True,
              help="streaming-kill: SIGKILL the active driver N times (takeover p50/max).")
@click.option("--faults", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="random: this many faults, kinds and moments drawn from --seed.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def chaos(
    scenario: str, short: bool, rate: float | None, seed: int, kills: int, faults: int,
    out: Path | None,
) -> None:
    """Inject SCENARIO under steady load; report RTO and reconcile every acknowledged event."""
    s = get_settings()
    cfg = ChaosConfig.from_settings(s)
    if short:
        cfg = cfg.short()
    cfg = replace(cfg, seed=seed, kills=kills, faults=faults)
    if rate:
        cfg = replace(cfg, rate=rate)
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    try:
        results = run_chaos(s, names, cfg, echo=click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    report = chaos_report(f"chaos-{scenario}", results, cfg)
    paths = report.write(out or s.results_dir)
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    if not report.passed:
        raise SystemExit(1)
