"""`PostgresNode.start` after a crash: a private PostgreSQL (initdb/pg_ctl) in a temp folder.

After every process of the stack was SIGKILLed, `clickguard stack up` ran pg_ctl while the old
postmaster was dead but not yet reaped; its pid still existed, PostgreSQL took it for a running
server ("lock file postmaster.pid already exists") and `stack up` died with a traceback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from clickguard import procs
from clickguard.settings import Settings
from clickguard_stack.nodes import PostgresNode

# a stand-in for the crashed postmaster: a child killed at once, left a zombie for 3 s, then
# reaped by its own parent (not by the test), as init reaps a crashed server's pid. Both run as
# the server's OS user: PostgreSQL ignores a pid of another user (kill() -> EPERM)
ZOMBIE_FOR_3_S = """
import os, signal, subprocess, time
child = subprocess.Popen(["sleep", "600"])
os.kill(child.pid, signal.SIGKILL)
print(child.pid, flush=True)
time.sleep(3)
child.wait()
"""


SERVER_USER = {"user": "postgres"} if os.geteuid() == 0 else {}
# the server's user may not reach the virtualenv's interpreter (under /root with pyenv)
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node(tmp_path: Path, settings: Settings) -> Iterator[PostgresNode]:
    """A stopped, initialised private cluster; stopped again afterwards."""
    pg = PostgresNode("crash-postgres", settings.model_copy(
        update={"home": tmp_path, "pg_port": free_port()}))
    pg.prepare()
    yield pg
    pg.stop()


def write_lock_file(node: PostgresNode, pid: int) -> None:
    lock = node.data_dir / "postmaster.pid"
    lock.write_text(f"{pid}\n{node.data_dir}\n")
    node.own(lock)


def test_start_waits_until_the_dead_postmaster_is_reaped(node: PostgresNode) -> None:
    holder = subprocess.Popen([PYTHON, "-c", ZOMBIE_FOR_3_S], stdout=subprocess.PIPE,
                              text=True, **SERVER_USER)
    try:
        assert holder.stdout is not None
        dead = int(holder.stdout.readline())
        assert procs.wait_until(lambda: procs.proc_state(dead) == "Z", 5)
        write_lock_file(node, dead)

        t0 = time.monotonic()
        pid = node.start()
        waited = time.monotonic() - t0

        assert procs.proc_state(dead) is None  # it started only once that pid was gone
        assert waited > 1.0, "start() did not wait for the zombie"
        assert pid == node.pid()
        with psycopg.connect(node.settings.pg_dsn("superuser", "postgres")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        holder.wait(timeout=10)


def test_a_live_process_named_in_the_lock_file_is_a_clear_error(
    node: PostgresNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresNode, "STALE_WAIT_S", 1.0)
    other = subprocess.Popen(["sleep", "600"], **SERVER_USER)
    try:
        write_lock_file(node, other.pid)
        with pytest.raises(RuntimeError) as err:
            node.start()
        message = str(err.value)
        # the server's own FATAL/HINT lines and where to read more, not a CalledProcessError
        assert "PostgreSQL did not start" in message
        assert "postmaster.pid" in message and str(other.pid) in message
        assert str(node.log_file) in message
        assert node.pid() is None
    finally:
        other.kill()
        other.wait()


def test_shared_buffers_come_from_the_settings_at_each_start(node: PostgresNode) -> None:
    """An existing data folder gets the configured pool too (it is not only written at initdb):
    users upgrading keep their cluster and get the smaller pool at their next start."""
    for size in ("48MB", "24MB"):
        node.settings = node.settings.model_copy(update={"pg_shared_buffers": size})
        node.start()
        with psycopg.connect(node.settings.pg_dsn("superuser", "postgres")) as conn:
            assert conn.execute("SHOW shared_buffers").fetchone() == (size,)
        node.stop()
