"""The local stack: which nodes exist, in which order they start, and when it is ready."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from clickguard import db, procs, stream_state
from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings
from clickguard_stack.errors import StackError
from clickguard_stack.nodes import (
    DagsterCodeNode,
    KafkaNode,
    Node,
    NodeStatus,
    PostgresNode,
    PythonNode,
    RegistryNode,
    SparkNode,
    StreamingNode,
    spark_nodes,
)

INFRA = ("postgres", "kafka-1", "kafka-2", "kafka-3", "registry")


def build_nodes(settings: Settings) -> dict[str, Node]:
    """All nodes by name, in start order. Application nodes follow the infrastructure."""
    nodes: dict[str, Node] = {"postgres": PostgresNode("postgres", settings, settings.pg_port)}
    for i in range(1, settings.kafka_nodes + 1):
        nodes[f"kafka-{i}"] = KafkaNode(
            f"kafka-{i}", settings, settings.kafka_broker_ports[i - 1], node_id=i
        )
    nodes["registry"] = RegistryNode(
        "registry", settings, settings.registry_port, needs=["postgres"]
    )
    for spark in spark_nodes(settings):  # optional: see Stack.resolve
        nodes[spark.name] = spark
    for node in app_nodes(settings):
        nodes[node.name] = node
    return nodes


def app_nodes(settings: Settings) -> list[PythonNode]:
    """Application processes supervised by the stack (streaming job, API, Dagster, dashboard)."""
    return [
        StreamingNode(
            "streaming", settings, None, needs=list(INFRA),
            module_argv=["streaming_job.supervisor"], kill_child_pid_file="job.pid",
        ),
        PythonNode(
            "api", settings, settings.api_port, needs=["postgres"],
            module_argv=["api.serve"],
            health_url=f"http://{settings.api_host}:{settings.api_port}/health",
        ),
        DagsterCodeNode(  # one code server for the webserver and the daemon (dagster_env)
            # niced: the runs it launches (Spark batch) inherit it and yield the CPU to the stream
            "dagster-code", settings, settings.dagster_code_port or settings.dagster_port + 1,
            needs=["postgres"], module_argv=["clickguard.dagster_env", "code"],
            nice=settings.dagster_code_nice, stop_tree=True,
        ),
        PythonNode(
            "dagster-webserver", settings, settings.dagster_port,
            needs=["postgres", "dagster-code"],
            module_argv=["clickguard.dagster_env", "webserver"],
            health_url=f"http://{settings.dagster_host}:{settings.dagster_port}/server_info",
        ),
        PythonNode(
            "dagster-daemon", settings, None, needs=["postgres", "dagster-code"],
            module_argv=["clickguard.dagster_env", "daemon"],
        ),
        PythonNode(  # Streamlit over the API only (dashboard_api_url; no database access)
            # SCHED_IDLE: its refresh bursts yield the CPU to the API and the stream at once
            # (docs/results/bench-dashboard.md measures what it changes)
            "dashboard", settings, settings.dashboard_port, needs=["api"],
            sched_idle=settings.dashboard_sched_idle,
            module_argv=["dashboard.serve"],
            health_url=f"http://{settings.dashboard_host}:{settings.dashboard_port}/_stcore/health",
        ),
    ]


class UnknownNodeError(KeyError):
    """A node name the stack does not have; its message is the sentence (KeyError's str()
    would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Stack:
    """Start, stop and inspect the nodes of the local stack."""

    def __init__(self, settings: Settings, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.nodes = build_nodes(settings)
        self.echo = echo
        self._log_starts: dict[str, int] = {}  # a node's log size when this Stack started it

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise UnknownNodeError(f"unknown node {name!r}; nodes: {', '.join(self.nodes)}")
        return self.nodes[name]

    def resolve(self, names: list[str] | None) -> list[str]:
        """Names in start order; None = every node whose code is present, the Spark nodes only
        with ``spark_cluster_up`` (they cost ≈ 1 GB and the default stack does not use them).
        Named nodes come with the nodes they need (`stack up registry` starts PostgreSQL too: it
        waited 120 s for a database nobody started and failed)."""
        if not names:
            return [n for n in self.nodes if (n in INFRA or _module_present(self.nodes[n])) and (
                self.settings.spark_cluster_up or not isinstance(self.nodes[n], SparkNode))]
        wanted: set[str] = set()
        todo = list(names)
        while todo:  # each named node with what it needs, as `docker compose up NODE` does
            n = todo.pop()
            if n in wanted:
                continue
            wanted.add(n)
            todo += [d for d in self.node(n).needs if not self.external(d)]
        return [n for n in self.nodes if n in wanted]

    def external(self, name: str) -> bool:
        """True when settings point the apps at another service than node ``name`` (external
        Kafka, registry or PostgreSQL): `up` does not start that node for the nodes needing it."""
        s = self.settings
        if name.startswith("kafka-"):
            return bool(s.kafka_bootstrap)
        if name == "registry":
            return bool(s.registry_url)
        if name == "postgres":
            return s.pg_external
        return False

    # -- up ---------------------------------------------------------------------------------
    def up(self, names: list[str] | None = None, timeout: float = 120.0) -> float:
        """Start ``names`` (default: all) and wait until each is really ready. Returns seconds."""
        t0 = time.monotonic()
        wanted = self.resolve(names)
        kafka_names = [n for n in wanted if n.startswith("kafka-")]
        started: list[str] = []  # by this call (not already running): warmed once healthy

        def start(name: str) -> None:
            if self._start(name):
                started.append(name)

        if "postgres" in wanted:
            start("postgres")
            self._wait("postgres", timeout)
            db.bootstrap(self.settings)
            applied = db.migrate(self.settings)
            if applied:
                self.echo(f"  migrations applied: {', '.join(applied)}")
        for n in kafka_names:
            start(n)
        if "registry" in wanted:
            start("registry")
        # the stream's Spark start (≈ 15 s) runs while the brokers start, not after them
        early = [n for n in wanted if self.nodes[n].starts_with_kafka
                 and all(d in INFRA or d not in wanted for d in self.nodes[n].needs)]
        early_start = bool(early and kafka_names)
        if "registry" in wanted and early_start:
            self._wait("registry", timeout)  # the stream reads schemas from its first batch
        if early_start:
            for n in early:
                start(n)
        if kafka_names:
            self.echo("  waiting for Kafka: brokers registered, topics with a full ISR")
            for n in kafka_names:
                self._wait(n, timeout)  # listening: a new process, not a stale registration
            # these brokers by node id: after a kill the others are registered already
            ids = {cast(KafkaNode, self.nodes[n]).node_id for n in kafka_names}
            ok = procs.wait_until(
                lambda: ids <= kafka_helpers.cluster_health(self.settings, topics=[]).broker_ids,
                timeout,
            )
            if not ok:
                raise StackError(self._failure("Kafka brokers did not register", kafka_names))
            every = self.settings.kafka_nodes
            # with every broker registered: the topics exist, and a broker back in the cluster
            # is ready once it has caught up (every ISR full); fewer brokers: no ISR can be full
            if kafka_helpers.cluster_health(self.settings, topics=[]).brokers >= every:
                created = kafka_helpers.ensure_topics(self.settings)
                if created:
                    self.echo(f"  topics created: {', '.join(created)}")
                if not procs.wait_until(
                    lambda: kafka_helpers.cluster_health(self.settings).ready(every), timeout
                ):
                    raise StackError(self._failure("partitions lack a full ISR", kafka_names))
        if "registry" in wanted and not early_start:
            self._wait("registry", timeout)
        for n in wanted:
            if n in INFRA:
                continue
            for dep in self.nodes[n].needs:  # an app node another one needs is ready first
                if dep in wanted and dep not in INFRA:
                    self._wait(dep, timeout)
            start(n)
        for n in wanted:
            if n not in INFRA:
                self._wait(n, timeout)
        self._warm(started)
        return time.monotonic() - t0

    def _start(self, name: str) -> bool:
        """Start ``name`` unless it runs already; True when this call started it."""
        node = self.nodes[name]
        before = node.pid()
        log = node.log_file
        self._log_starts[name] = log.stat().st_size if log.exists() else 0
        pid = node.start()
        if pid == before:
            return False
        self.echo(f"  started {name} (pid {pid})")
        return True

    def _warm(self, started: list[str]) -> None:
        """Each node the caller started, now healthy, warms up once (:meth:`Node.warm`). A failed
        warm-up is reported, not fatal: the node works, only its first request is slower."""
        for name in started:
            node = self.nodes[name]
            if node.warm_up:  # seconds without output otherwise (spark-connect: ≈ 7–12 s)
                self.echo(f"  warming up {name}: {node.warm_up} ...")
            try:
                done = node.warm()
            except Exception as exc:  # noqa: BLE001 - any warm-up failure leaves a working node
                first = str(exc).splitlines()[0] if str(exc) else ""
                self.echo(f"  WARNING: {name} warm-up failed ({type(exc).__name__}: {first});"
                          " its first job runs cold")
                continue
            if done:
                self.echo(f"  warmed {name}: {done}")

    def _wait(self, name: str, timeout: float) -> None:
        node = self.nodes[name]

        def healthy() -> bool:
            if not node.pid():
                raise StackError(self._failure(f"{name} exited", [name]))
            st = node.status()
            if st.state == stream_state.CRASH_LOOPING:
                raise StackError(self._failure(f"{name} is crash-looping: {st.detail}", [name]))
            return st.healthy

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy():
                return
            time.sleep(0.25)
        raise StackError(self._failure(f"{name} not healthy after {timeout:.0f}s", [name]))

    def _failure(self, what: str, names: list[str]) -> str:
        logs = ", ".join(str(self.nodes[n].log_file) for n in names)
        said = "".join(
            f"\n{n}'s log ends:\n  " + "\n  ".join(lines)
            for n in names
            if (lines := log_excerpt(self.nodes[n].log_file, self._log_starts.get(n)))
        )
        return f"{what}; see the log: {logs} (or `clickguard stack logs NODE`){said}"

    # -- down / per node ----------------------------------------------------------------------
    def leftover_workers(self) -> list[Node]:
        """Spark workers started under a larger ``CLICKGUARD_SPARK_WORKERS`` than this shell's
        (their run folders are in the home): ``down`` stops them too, not only the ones the
        current setting names."""
        numbers = [
            int(n) for p in self.settings.home.glob("spark-worker-*")
            if (n := p.name.removeprefix("spark-worker-")).isdigit()
        ]
        top = max(numbers, default=0)
        if top <= self.settings.spark_workers:
            return []
        wider = spark_nodes(self.settings.model_copy(update={"spark_workers": top}))
        return [n for n in wider if n.name.startswith("spark-worker-") and n.name not in self.nodes]

    def down(self, reset: bool = False) -> None:
        """Stop application nodes first (last started, first stopped), then the registry, the
        Kafka brokers together (:meth:`stop_brokers`), PostgreSQL last."""
        for node in self.leftover_workers():
            if node.pid():
                self.echo(f"  stopping {node.name}")
                node.stop()
        brokers: list[KafkaNode] = []
        for name in reversed(list(self.nodes)):
            node = self.nodes[name]
            if not node.pid():
                continue
            if isinstance(node, KafkaNode):
                brokers.append(node)
                continue
            if brokers:  # the node after the brokers (PostgreSQL) waits for them
                self.stop_brokers(brokers)
                brokers = []
            self.echo(f"  stopping {name}")
            node.stop()
        if brokers:
            self.stop_brokers(brokers)
        if reset and self.settings.home.exists():
            shutil.rmtree(self.settings.home)
            self.echo(f"  removed {self.settings.home}")

    def stop_brokers(self, brokers: list[KafkaNode], timeout: float = 30.0,
                     grace: float = 3.0) -> None:
        """SIGTERM the brokers at once and wait until they exit.

        Each broker first asks the controller quorum (a majority of these same combined nodes)
        to grant its controlled shutdown. One at a time, the last broker never got it (its
        peers, the quorum, had gone), waited for our 30 s timeout and was SIGKILLed: an unclean
        shutdown every time. Together they usually are all granted within ≈ 0.3 s, but the
        broker that ends up leading every partition can still lose the race (seen 1 in 6).
        A broker left without a quorum and without a grant would wait 5 minutes: after
        ``grace`` seconds it is SIGKILLed, and said so (its log is recovered at the next
        start; every acknowledged record is also on a peer that stopped cleanly, min ISR 2).
        """
        self.echo(f"  stopping {', '.join(b.name for b in brokers)}")
        by_pid = {pid: b for b in brokers if (pid := b.pid())}
        marks = {pid: b.log_size() for pid, b in by_pid.items()}
        # the brokers not in ``brokers`` were already down and cannot start meanwhile: the
        # running nodes of the quorum are the ones still alive here
        majority = self.settings.kafka_nodes // 2 + 1
        granted: set[int] = set()
        quorum_lost_at: float | None = None

        def no_quorum_for_a_waiter(alive: list[int]) -> bool:
            nonlocal quorum_lost_at
            if len(alive) >= majority:
                return False
            # logs are read only once the quorum is gone, and each broker's grant once
            granted.update(p for p in alive
                           if p not in granted and by_pid[p].shutdown_granted(marks[p]))
            if granted.issuperset(alive):
                return False
            quorum_lost_at = quorum_lost_at or time.monotonic()
            return time.monotonic() - quorum_lost_at > grace

        killed = procs.terminate_all(list(by_pid), timeout, give_up=no_quorum_for_a_waiter)
        why = ("no controller quorum left to grant its controlled shutdown" if quorum_lost_at
               else f"still running after {timeout:.0f} s")
        for pid in killed:
            self.echo(f"  {by_pid[pid].name}: {why}: SIGKILL (its log is recovered at the next "
                      "start; the acknowledged records are also on its peers)")

    def active_controller(self) -> str | None:
        """The Kafka node that is the active KRaft controller (newest leader epoch any node
        recorded), None if none has one. Its loss costs a controller election on top of the
        broker's fencing, so fault reports name it."""
        seen = [
            leader for node in self.nodes.values()
            if isinstance(node, KafkaNode) and (leader := node.quorum_leader())
        ]
        return f"kafka-{max(seen)[1]}" if seen else None

    def control(self, action: str, name: str) -> str:
        """stop | start | restart | kill | pause | resume one node."""
        node = self.node(name)
        if action in ("start", "restart"):
            if action == "restart":  # e.g. to load changed code or settings
                node.stop()
            started = self._start(name)
            self._wait(name, 120)
            if started and node.warm_on_start:
                self._warm([name])
            return f"{name} {action}ed (pid {node.pid()})"
        if action == "stop":
            node.stop()
            return f"{name} stopped"
        sig = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}[action]
        pid = node.signal(sig)
        if pid is None:
            return f"{name} is not running"
        if sig is signal.SIGKILL:
            procs.wait_dead([pid], 10)
        return f"{name}: sent {sig.name} to pid {pid}"

    def status(self, memory: bool = False) -> list[NodeStatus]:
        """Every node's state; with ``memory``, each process tree's RSS from one walk of /proc."""
        table = procs.ProcTable.read() if memory else None
        return [self.nodes[n].status(table) for n in self.nodes]


def log_excerpt(path: Path, since: int | None = None, lines: int = 4) -> list[str]:
    """What a node's log said since byte ``since`` (this start's, not an earlier run's): its
    first three error lines, which usually name the cause, then its last ``lines`` lines, stack
    frames left out (a JVM that died of ``OutOfMemoryError`` ends in twenty ``at ...`` lines;
    a broker that could not register ends in its shutdown's warnings)."""
    text = procs.log_since(path, since or 0, limit=256 * 1024)
    said = [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith(("at ", "... "))]
    errors = [i for i, ln in enumerate(said) if _is_error(ln)]
    keep = sorted(set(errors[:3]) | set(range(max(0, len(said) - lines), len(said))))
    out: list[str] = []
    for i in keep:
        if out and i - 1 not in keep:
            out.append("...")
        out.append(said[i])
    return out


def _is_error(line: str) -> bool:
    """A log line at ERROR/FATAL, or a line without a level that names an error (an exception
    under an ERROR line, the JVM's own ``Error occurred during initialization of VM``)."""
    words = line.split()
    if any(level in words for level in ("ERROR", "FATAL")):
        return True
    if any(level in words for level in ("INFO", "WARN", "WARNING", "DEBUG", "TRACE")):
        return False
    return "Error" in line or "Exception" in line


def _module_present(node: Node) -> bool:
    """App nodes are part of `up` once their code exists in the checkout."""
    if not isinstance(node, PythonNode):
        return True
    import importlib.util

    return importlib.util.find_spec(node.module_argv[0].rsplit(".", 1)[0]) is not None and (
        importlib.util.find_spec(node.module_argv[0]) is not None
    )


def format_status(rows: list[NodeStatus]) -> str:
    lines = [f"{'NODE':<18} {'STATE':<13} {'PID':>8} {'PORT':>6} {'RSS MiB':>8}  DETAIL"]
    for r in rows:
        detail = r.detail if len(r.detail) <= 120 else r.detail[:119] + "…"
        lines.append(
            f"{r.name:<18} {r.state:<13} {r.pid or '-':>8} {r.port or '-':>6} "
            f"{r.rss_mb if r.rss_mb is not None else '-':>8}  {detail}"
        )
    runs = round(sum(r.runs_mb for r in rows), 1)
    during = (f"; {runs:,.1f} of it Dagster runs in progress, {total_rss_mb(rows) - runs:,.1f} "
              "without them") if runs else ""
    lines.append(f"{'TOTAL':<18} {'':<13} {'':>8} {'':>6} {total_rss_mb(rows):>8}  "
                 f"RSS summed over every node's process tree (issue 10 budget: 4 GiB{during})")
    return "\n".join(lines)


def total_rss_mb(rows: list[NodeStatus]) -> float:
    """Whole-stack RSS: the sum of the nodes' process-tree RSS (down nodes count 0)."""
    return round(sum(r.rss_mb or 0.0 for r in rows), 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `clickguard stack`")
