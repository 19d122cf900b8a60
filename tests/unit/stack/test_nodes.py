"""Node control on real processes: `stack kill` of an app node ends its workers too."""

from __future__ import annotations

import base64
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickguard import procs
from clickguard.settings import REPO_ROOT, Settings
from clickguard_stack import nodes
from clickguard_stack.nodes import PythonNode, StreamingNode


@pytest.fixture
def forker(tmp_path: Path) -> Iterator[tuple[PythonNode, int]]:
    """An app node whose server has started its one worker process, as uvicorn's do."""
    node = PythonNode(
        "api", Settings(_env_file=None, home=tmp_path), None,
        module_argv=["tests.unit.stack._forker"], extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        yield node, pid
    finally:
        node.stop(timeout=5)


def test_kill_takes_the_worker_processes_with_it(forker: tuple[PythonNode, int]) -> None:
    node, pid = forker
    workers = procs.descendants(pid)
    assert node.status().state == "healthy"
    assert node.signal(signal.SIGKILL) == pid
    assert procs.wait_dead([pid, *workers], 10)
    assert node.status().state == "down"


def test_status_reads_memory_only_from_a_snapshot(forker: tuple[PythonNode, int]) -> None:
    """A health wait asks for the state alone; `stack status` walks /proc once for every node
    and sums each tree's VmRSS (the server and its worker)."""
    node, pid = forker
    assert node.status().rss_mb is None
    table = procs.ProcTable.read()
    assert table.descendants(pid) == procs.descendants(pid)
    own = {p: _vmrss_kb(p) for p in [pid, *table.descendants(pid)]}
    assert len(own) == 2 and all(kb > 1000 for kb in own.values())
    assert node.status(table).rss_mb == pytest.approx(sum(own.values()) / 1024, abs=1.0)
    node.stop(timeout=5)
    assert node.status(procs.ProcTable.read()).rss_mb is None  # down


def _vmrss_kb(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("VmRSS:"))
    return int(line.split()[1])


@pytest.mark.parametrize("stop_tree", [True, False])
def test_stop_tree_lets_a_server_waiting_for_its_worker_end_cleanly(
    tmp_path: Path, stop_tree: bool
) -> None:
    """The Dagster code server waits for its run workers on SIGTERM: stopped by its main pid
    alone it was SIGKILLed after the timeout (the run left STARTED); ``stop_tree`` sends the
    workers SIGTERM too, and the server ends by itself."""
    from clickguard_stack.manager import build_nodes

    settings = Settings(_env_file=None, home=tmp_path)
    assert build_nodes(settings)["dagster-code"].stop_tree is True
    node = PythonNode(
        "dagster-code", settings, None, module_argv=["tests.unit.stack._waiter"],
        extra_env={"PYTHONPATH": str(REPO_ROOT)}, stop_tree=stop_tree,
    )
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        worker = procs.descendants(pid)[0]
        node.stop(timeout=3)
        assert procs.wait_dead([pid, worker], 5)
        exit_file = node.dir / "child-exit"
        if stop_tree:  # the worker ended on SIGTERM, then the server on its own
            assert exit_file.read_text() == str(-signal.SIGTERM)
        else:  # the server still waited for its worker when the SIGKILL came
            assert not exit_file.exists()
    finally:
        node.stop(timeout=1)


def test_supervisor_node_reports_crash_looping_from_its_status_file(tmp_path: Path) -> None:
    """An alive supervisor whose job keeps failing is not 'healthy'; a stale file is ignored."""
    from clickguard import stream_state
    from clickguard_stack.manager import format_status

    settings = Settings(_env_file=None, home=tmp_path, stream_drivers=1)
    node = StreamingNode(
        "streaming", settings, None, module_argv=["tests.unit.stack._forker"],
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    pid = node.start()
    try:
        active = node.dir / stream_state.driver_file(0)
        stream_state.write_json(active, {"slot": 0, "pid": pid, "role": "active", "epoch": 1,
                                         "query": "q-1"})
        st = stream_state.StreamRunState(threshold=2, supervisor_pid=pid)
        for _ in range(2):
            st.record_failure(stream_state.FailedRun(
                exit_code=1, error="InsufficientPrivilege: permission denied for table events",
                batch_id=0, ledger_advanced=False, ran_s=9.0,
            ))
        path = node.dir / stream_state.STATUS_FILE
        stream_state.write_json(path, {**st.to_dict(), "supervisor_pid": pid + 1})
        assert node.status().state == "healthy"  # written by another (earlier) supervisor
        stream_state.write_json(path, st.to_dict())
        status = node.status()
        assert (status.state, status.healthy) == ("crash-looping", False)
        assert status.detail == (
            "2 failed run(s) without progress at batch 0: "
            "InsufficientPrivilege: permission denied for table events; "
            f"active d0 pid {pid} epoch 1"
        )
        line = format_status([status]).splitlines()[1]
        assert line.split()[:2] == ["streaming", "crash-looping"]
        assert "permission denied for table events" in line
        st.record_progress()
        stream_state.write_json(path, st.to_dict())
        assert node.status().state == "healthy"
    finally:
        node.stop(timeout=5)


def test_the_stream_node_is_healthy_only_once_a_driver_runs_the_query(tmp_path: Path) -> None:
    """An alive supervisor whose drivers still start Spark takes no events: 'starting' until
    the driver holding the lease publishes its query; its warm-up waits for the standby's
    first background warm-up round."""
    from clickguard import stream_state

    settings = Settings(_env_file=None, home=tmp_path, stream_drivers=2)
    node = StreamingNode(
        "streaming", settings, None, module_argv=["tests.unit.stack._forker"],
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        (worker,) = procs.descendants(pid)
        d0, d1 = (node.dir / stream_state.driver_file(i) for i in (0, 1))
        assert (node.status().state, node.status().detail) == (
            "starting", "no driver runs the query yet")
        stream_state.write_json(d0, {"slot": 0, "pid": pid, "role": "active", "epoch": 1})
        assert node.status().state == "starting"  # holds the lease, query not started
        stream_state.write_json(d0, {"slot": 0, "pid": pid, "role": "active", "epoch": 1,
                                     "query": "q-1"})
        assert node.status().state == "healthy"
        stream_state.write_json(d1, {"slot": 1, "pid": worker, "role": "standby", "warm": True})
        with pytest.raises(RuntimeError, match="no warm standby after 1 s"):
            node.warm(timeout=1.0)
        stream_state.write_json(d1, {"slot": 1, "pid": worker, "role": "standby", "warm": True,
                                     "rewarms": 1})
        assert node.warm(timeout=1.0).startswith("1 standby driver(s) warm after")
        assert node.status().detail == f"active d0 pid {pid} epoch 1; standby d1 pid {worker} warm"
    finally:
        node.stop(timeout=5)


def test_a_sched_idle_node_its_threads_and_children_run_under_sched_idle(
    tmp_path: Path,
) -> None:
    """The dashboard node runs under SCHED_IDLE (settings.dashboard_sched_idle): its refresh
    bursts yield the CPU to the API at once. Real processes are spawned and the policy of every
    thread of the node and of its child is read back from the kernel."""
    import os

    from clickguard_stack.manager import build_nodes

    s = Settings(_env_file=None, home=tmp_path)
    nodes = build_nodes(s)
    assert (nodes["dashboard"].sched_idle, nodes["api"].sched_idle) == (True, False)
    assert build_nodes(Settings(_env_file=None, home=tmp_path, dashboard_sched_idle=False))[
        "dashboard"].sched_idle is False
    node = PythonNode("idle", s, None, sched_idle=True, module_argv=["tests.unit.stack._forker"],
                      extra_env={"PYTHONPATH": str(REPO_ROOT)})
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        (child,) = procs.descendants(pid)
        # the forker's own thread, started after exec
        assert procs.wait_until(lambda: len(os.listdir(f"/proc/{pid}/task")) >= 2, 10)
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        for tid in (*threads, child):
            assert os.sched_getscheduler(tid) == os.SCHED_IDLE, tid
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller is left alone
        if AUTOGROUP.exists():  # and its session's group is ranked last among the groups
            assert _autogroup_nice(pid) == _autogroup_nice(child) == 19
    finally:
        node.stop(timeout=5)


AUTOGROUP = Path("/proc/self/autogroup")


def _autogroup_nice(pid: int) -> int | None:
    """The nice of ``pid``'s session group: "/autogroup-123 nice 10" -> 10.

    None when the file is empty: the kernel prints nothing for a task still in the root group,
    one whose session never called setsid since boot (a child of a container's PID 1, as in CI).
    """
    text = Path(f"/proc/{pid}/autogroup").read_text().split()
    return int(text[-1]) if text else None


def test_a_niced_node_and_what_it_launches_yield_the_cpu(tmp_path: Path) -> None:
    """dagster-code runs niced (settings.dagster_code_nice): the Spark runs it launches inherit
    it, and so does its session's autogroup, without which a task's nice only ranks it within
    its own session. Real processes are spawned; the kernel's values are read back."""
    import os

    from clickguard_stack.manager import build_nodes

    s = Settings(_env_file=None, home=tmp_path)
    nodes = build_nodes(s)
    assert (nodes["dagster-code"].nice, nodes["streaming"].nice, nodes["api"].nice) == (10, 0, 0)
    assert build_nodes(Settings(_env_file=None, home=tmp_path, dagster_code_nice=0))[
        "dagster-code"].nice == 0
    node = PythonNode("niced", s, None, nice=10, module_argv=["tests.unit.stack._forker"],
                      extra_env={"PYTHONPATH": str(REPO_ROOT)})
    ours = _autogroup_nice(os.getpid()) if AUTOGROUP.exists() else None
    pid = node.start()
    try:
        assert procs.wait_until(lambda: len(procs.descendants(pid)) == 1, 10)
        (child,) = procs.descendants(pid)
        assert procs.wait_until(lambda: len(os.listdir(f"/proc/{pid}/task")) >= 2, 10)
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        for tid in (*(int(t) for t in os.listdir(f"/proc/{pid}/task")), child):
            assert os.getpriority(os.PRIO_PROCESS, tid) == min(mine + 10, 19), tid
            assert os.sched_getscheduler(tid) == os.SCHED_OTHER, tid
        if AUTOGROUP.exists():
            assert _autogroup_nice(pid) == _autogroup_nice(child) == 10
            assert _autogroup_nice(os.getpid()) == ours  # the caller's group is left alone
    finally:
        node.stop(timeout=5)


def test_the_active_controller_is_the_leader_of_the_newest_quorum_epoch(tmp_path: Path) -> None:
    """Each KRaft node records the quorum leader it last knew; a node that missed the last
    election (it was down) still names the old one, so the newest epoch wins."""
    import json

    from clickguard_stack.manager import Stack

    stack = Stack(Settings(_env_file=None, home=tmp_path), echo=lambda _m: None)
    assert stack.active_controller() is None  # nothing formatted yet
    for node_id, (epoch, leader) in {1: (3, 1), 2: (4, 2), 3: (4, 2)}.items():
        state = tmp_path / f"kafka-{node_id}" / "data" / "__cluster_metadata-0" / "quorum-state"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"leaderId": leader, "leaderEpoch": epoch, "votedId": -1}))
    assert stack.active_controller() == "kafka-2"
    (tmp_path / "kafka-2" / "data" / "__cluster_metadata-0" / "quorum-state").write_text("{")
    assert stack.active_controller() == "kafka-2"  # a torn file is skipped, kafka-3 agrees


def test_kraft_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with "-" made Kafka's storage tool fail the first `stack up` (1 in 64)."""
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(nodes.uuid, "uuid4", lambda: next(drawn))
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).startswith(b"-")  # the drawn case
    assert nodes.new_cluster_id() == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")


def test_down_also_finds_workers_started_under_a_larger_worker_count(tmp_path: Path) -> None:
    """`stack up` with CLICKGUARD_SPARK_WORKERS=3, `stack down` from a shell without it: the
    run folders name the workers beyond the current setting, and `down` stops them too."""
    from clickguard_stack.manager import Stack

    for n in (1, 2, 3):
        (tmp_path / f"spark-worker-{n}").mkdir()
    (tmp_path / "spark-worker-x").mkdir()  # not a worker number: ignored
    stack = Stack(Settings(_env_file=None, home=tmp_path, spark_workers=1), echo=lambda _m: None)
    assert [n.name for n in stack.leftover_workers()] == ["spark-worker-2", "spark-worker-3"]
    assert Stack(Settings(_env_file=None, home=tmp_path, spark_workers=3)).leftover_workers() == []


def test_a_started_node_warms_up_once_and_a_failed_warm_up_is_loud_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clickguard_stack.manager import Stack

    said: list[str] = []
    settings = Settings(_env_file=None, home=tmp_path)
    stack = Stack(settings, echo=said.append)
    node = PythonNode(
        "api", settings, None, module_argv=["tests.unit.stack._forker"],
        extra_env={"PYTHONPATH": str(REPO_ROOT)},
    )
    stack.nodes["api"] = node
    calls: list[str] = []

    def failing_warm() -> str:
        calls.append("warm")
        raise RuntimeError("connection refused\nsecond line")

    monkeypatch.setattr(node, "warm", failing_warm)
    try:
        assert stack.control("start", "api").startswith("api started")
        assert calls == ["warm"]
        assert any("WARNING: api warm-up failed (RuntimeError: connection refused)" in line
                   for line in said), said
        assert node.status().state == "healthy"  # the node itself is left running
        stack.control("start", "api")  # already running: not started, so not warmed again
        assert calls == ["warm"]
        node.stop(timeout=5)
        stack.up(["api"], timeout=30)  # `stack up` warms what it started, once
        assert calls == ["warm", "warm"]
        stack.up(["api"], timeout=30)
        assert calls == ["warm", "warm"]
    finally:
        node.stop(timeout=5)


def test_spark_connect_warm_up_child_gets_this_stacks_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm-up's child process (python -m clickguard_dagster.warm) gets every setting of the
    stack that started the server, not the shell's."""
    import os
    import subprocess

    from clickguard.settings import settings_env

    s = Settings(_env_file=None, home=tmp_path, spark_connect_port=25002, pg_port=6543)
    monkeypatch.setenv("CLICKGUARD_PG_PORT", "1")  # the shell's, not the stack's
    seen: dict[str, object] = {}

    def run(argv: list[str], env: dict[str, str], **_kw: object) -> subprocess.CompletedProcess:
        seen.update(argv=argv, env=env)
        return subprocess.CompletedProcess(argv, 0, stdout="9.5\n", stderr="")

    monkeypatch.setattr(nodes.subprocess, "run", run)
    node = next(n for n in nodes.spark_nodes(s) if n.name == "spark-connect")
    assert node.warm() == "ran daily_sessions' Spark plans on generated events in 9.5 s"
    assert seen["argv"] == [nodes.sys.executable, "-m", "clickguard_dagster.warm"]
    assert seen["env"] == settings_env(s, os.environ)
    env = seen["env"]
    assert isinstance(env, dict)
    assert env["CLICKGUARD_PG_PORT"] == "6543" and env["CLICKGUARD_SPARK_CONNECT_PORT"] == "25002"


def test_a_warm_up_is_announced_before_it_runs_and_reported_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stack up` says that spark-connect is warming up before the seconds that takes, then
    what it did; a node whose warm-up does nothing prints neither line."""
    from clickguard_stack.manager import Stack

    said: list[str] = []
    stack = Stack(Settings(_env_file=None, home=tmp_path), echo=said.append)
    connect = stack.nodes["spark-connect"]
    monkeypatch.setattr(connect, "warm", lambda: said.append("(warm runs)") or "done it")
    stack._warm(["api", "spark-connect"])
    warming = "  warming up spark-connect: daily_sessions' Spark plans on generated events ..."
    assert said == [warming, "(warm runs)", "  warmed spark-connect: done it"]


def test_broker_jvm_options_come_last_before_the_classpath(tmp_path: Path) -> None:
    """``CLICKGUARD_KAFKA_JVM_OPTS`` reaches every broker's command line after our own options
    (a later -XX flag wins in HotSpot), before ``-cp``, split on whitespace."""
    from clickguard.jars import jar_dir
    from clickguard_stack.manager import build_nodes

    settings = Settings(_env_file=None, home=tmp_path, cache_dir=tmp_path / "cache",
                        kafka_jvm_opts=" -XX:TieredStopAtLevel=1   -XX:+UseSerialGC ")
    jar_dir(settings, "kafka").mkdir(parents=True)
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        argv = build_nodes(settings)[name].argv()
        cp = argv.index("-cp")
        assert argv[cp - 2:cp] == ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        assert argv.index("-XX:+UseG1GC") < cp - 2
        # our JIT thresholds come before, so a user's -XX:CompileThresholdScaling=1 wins
        assert argv.index("-XX:CompileThresholdScaling=0.1") < cp - 2
    plain = build_nodes(Settings(_env_file=None, home=tmp_path, cache_dir=tmp_path / "cache"))
    argv = plain["kafka-1"].argv()
    assert argv[argv.index("-cp") - 1].startswith("-Dclickguard.node=")


def test_broker_quorum_timeouts_come_from_the_settings(tmp_path: Path) -> None:
    from clickguard_stack.manager import build_nodes

    settings = Settings(_env_file=None, home=tmp_path, kafka_quorum_election_timeout_ms=700,
                        kafka_quorum_fetch_timeout_ms=1500)
    props = build_nodes(settings)["kafka-2"].properties()  # type: ignore[attr-defined]
    assert props["controller.quorum.election.timeout.ms"] == 700
    assert props["controller.quorum.fetch.timeout.ms"] == 1500
