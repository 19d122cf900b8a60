"""Shared fixtures: settings and the real local stack (started here if not already running)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import psycopg
import pytest
from click.testing import Result

from clickguard import db
from clickguard.settings import Settings, get_settings
from clickguard_stack.manager import INFRA, Stack


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Dagster's in-process execution (``dg.materialize``) leaves SIGTERM raising
    KeyboardInterrupt in the test process; a later test's forked pool then inherited it, and
    ``Pool.__exit__`` waited forever on a worker that its terminate() did not end."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``cli(args, CLICKGUARD_X="v", ...)``: run ``clickguard ARGS`` in-process with those
    variables set, on settings read afresh (``get_settings`` caches them) and forgotten after."""
    from click.testing import CliRunner

    from clickguard_cli.cli import main

    def run(args: list[str], **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(main, args)
        finally:
            get_settings.cache_clear()

    return run


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


# nodes a `make run` (or `clickguard stack up`) leaves running and the tests only start for
# themselves, one at a time, and stop again
PLATFORM_APPS = ("streaming", "api", "dagster-code", "dagster-webserver", "dagster-daemon",
                 "dashboard")
ON_RUNNING_PLATFORM = "CLICKGUARD_TESTS_ON_RUNNING_PLATFORM"


@pytest.fixture(scope="session")
def not_on_a_running_platform(settings: Settings) -> None:
    """`make test` beside `make run` used the same run folder and ports: its fixtures deleted the
    demo's raw topic, emptied its tables and stopped its stream. Stop the session instead, and
    say how to run it anyway. A session fixture: checked once, when the session first needs the
    stack (later, app nodes the tests started themselves may be up)."""
    s = Stack(settings, echo=lambda _msg: None)
    running = [n for n in PLATFORM_APPS if s.node(n).pid() is not None]
    if running and not os.environ.get(ON_RUNNING_PLATFORM):
        pytest.exit(
            f"a running platform uses {s.settings.home} ({', '.join(running)} up): the tests "
            "would reset its stream (delete the raw topic, empty the event tables) and stop its "
            "nodes. Stop it first (`make stop`), give the tests a run folder and ports of their "
            "own (CLICKGUARD_HOME and the CLICKGUARD_*_PORT variables), or set "
            f"{ON_RUNNING_PLATFORM}=1 to run on it anyway.", returncode=3)


@pytest.fixture(scope="session")
def stack(settings: Settings, not_on_a_running_platform: None) -> Iterator[Stack]:
    """The infrastructure nodes, healthy. Started (and stopped at the end) only if needed."""
    s = Stack(settings, echo=lambda _msg: None)
    started = [r.name for r in s.status() if r.name in INFRA and not r.healthy]
    if started:
        s.up(list(INFRA))
    yield s
    # leave the stack as we found it: stop what this session started, unless told to keep it
    if started and not os.environ.get("CLICKGUARD_KEEP_STACK"):
        s.down()


@pytest.fixture(scope="session")
def postgres_alone(settings: Settings, not_on_a_running_platform: None) -> Iterator[Settings]:
    """PostgreSQL only (started if needed, stopped at the end if started here), bootstrapped:
    for tests that need no Kafka, registry or stream."""
    s = Stack(settings, echo=lambda _msg: None)
    started = not s.node("postgres").status().healthy
    if started:
        s.up(["postgres"])
    db.bootstrap(settings)
    yield settings
    if started and not os.environ.get("CLICKGUARD_KEEP_STACK"):
        s.node("postgres").stop()


@pytest.fixture
def pg(stack: Stack, settings: Settings) -> Iterator[psycopg.Connection]:
    """A writer-role connection to the application database (autocommit)."""
    with db.connect(settings, "writer", autocommit=True) as conn:
        yield conn
