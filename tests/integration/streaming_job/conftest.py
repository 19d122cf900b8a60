"""A real streaming job (node ``streaming`` of the stack) on a private topic, per test module.

Each module gets its own raw/DLQ/late topics and Spark checkpoint, so runs never see each other's
records; the tables are shared, so tests filter by topic, event-id prefix and query id.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from clickguard import db, procs
from clickguard.kafka import ensure_topics
from clickguard.settings import Settings
from clickguard.spark import checkpoint_query_id
from clickguard_stack.manager import Stack


class LogTail:
    """What a log file gains from now on: logs persist across runs, and a test that searched
    the whole file would find an earlier run's lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size if path.exists() else 0

    def text(self) -> str:
        return procs.log_since(self.path, self.start)


@dataclass
class StreamRun:
    """A running streaming job on private topics, and how to observe it."""

    settings: Settings
    stack: Stack
    def __post_init__(self) -> None:
        self._pg = db.KeptConnection(self.settings, "writer")

    @property
    def conn(self) -> psycopg.Connection:
        """A writer connection (autocommit), probed and re-opened if PostgreSQL was restarted."""
        def probed(conn: psycopg.Connection) -> psycopg.Connection:
            conn.execute("SELECT 1")
            return conn

        return self._pg.call(probed)

    def close(self) -> None:
        self._pg.drop()

    def query_id(self, timeout: float = 360.0) -> str:  # Spark start-up on a loaded box
        return checkpoint_query_id(self.settings.checkpoint_dir, timeout, f"; see {self.log}")

    @property
    def log(self) -> Path:
        return self.stack.node("streaming").log_file

    def accounted(self) -> int:
        """Input rows of every committed batch of this query."""
        row = self.conn.execute(
            "SELECT coalesce(sum(input_rows), 0) FROM batch_ledger WHERE query_id = %s",
            (self.query_id(),),
        ).fetchone()
        return int(row[0]) if row else 0

    def wait_accounted(self, total: int, timeout: float = 600.0) -> None:
        """Until the ledger accounts for ``total`` input records (progress printed)."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            n = self.accounted()
            if n >= total:
                assert n == total, f"ledger accounts for {n} records, {total} were produced"
                return
            if n != last:
                print(f"  ledger: {n}/{total} records accounted", flush=True)
                last = n
            if time.monotonic() > deadline:
                raise TimeoutError(f"ledger has {n}/{total} after {timeout}s; see {self.log}")
            time.sleep(1.0)


@contextmanager
def private_stream(
    checkpoint: Path, extra_env: dict[str, str] | None = None, start: bool = True
) -> Iterator[StreamRun]:
    """The streaming node on fresh private topics and checkpoint; stopped afterwards."""
    tag = uuid.uuid4().hex[:8]
    overrides = {
        "CLICKGUARD_TOPIC_RAW": f"test.{tag}.raw",
        "CLICKGUARD_TOPIC_DLQ": f"test.{tag}.dlq",
        "CLICKGUARD_TOPIC_LATE": f"test.{tag}.late",
        "CLICKGUARD_STREAM_CHECKPOINT_DIR": str(checkpoint),
        "CLICKGUARD_STREAM_RESTART_BACKOFF_S": "1",
        # small batches: each commits within seconds even on a busy 2-core machine
        "CLICKGUARD_STREAM_MAX_OFFSETS_PER_TRIGGER": "5000",
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)  # the node's processes inherit this environment
    settings = Settings()
    run_stack = Stack(settings, echo=lambda _m: None)
    run = StreamRun(settings, run_stack)
    try:
        if "CLICKGUARD_KAFKA_BOOTSTRAP" not in overrides:
            ensure_topics(settings)
        run_stack.control("stop", "streaming")  # never two jobs on one stack
        if start:
            run_stack.control("start", "streaming")
        yield run
    finally:
        run.close()
        run_stack.control("stop", "streaming")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def stream_run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamRun]:
    with private_stream(tmp_path_factory.mktemp("checkpoint")) as run:
        yield run
