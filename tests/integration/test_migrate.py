"""`db.migrate` on a running stack: a table dropped under its grant does not fail `stack up`."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from click.testing import Result

from clickguard import db
from clickguard.settings import Settings


def _while_a_drop_is_pending(settings: Settings, run: Callable[[], Any]) -> dict[str, Any]:
    """``run()`` in a thread while another session holds an uncommitted DROP of a stage table
    (as a Dagster run's swap does); the drop commits once ``run``'s grant waits on it."""
    name = f"stage_probe_{int(time.time())}_{uuid.uuid4().hex[:6]}"
    with db.connect(settings, "writer", autocommit=True) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {name} (x int)")
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = run()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc

    with db.connect(settings, "writer") as dropper, \
            db.connect(settings, "writer", autocommit=True) as watch:
        dropper.execute(f"DROP TABLE {name}")  # its pg_class row: deleted, not yet committed
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the grant waits for the dropping transaction
            waiting = db.one(watch, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
                                    " = 'Lock' AND query LIKE 'GRANT SELECT ON ALL TABLES%%'")[0]
            if waiting:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the migration's grant never waited on the pending DROP")
        dropper.commit()
        thread.join(timeout=30)
    assert not thread.is_alive()
    return out


def test_a_stage_table_dropped_under_the_grant_is_retried(postgres_alone: Settings) -> None:
    settings = postgres_alone
    db.migrate(settings)
    # one attempt meets the deleted catalog row: the failure `stack up` exited 1 with in CI
    once = _while_a_drop_is_pending(settings, lambda: db.migrate(settings, attempts=1))
    assert isinstance(once.get("error"), psycopg.errors.InternalError_), once
    assert "tuple concurrently deleted" in str(once["error"])
    # the default runs the rolled-back transaction again, and the reader still reads
    retried = _while_a_drop_is_pending(settings, lambda: db.migrate(settings))
    assert retried == {"result": []}
    with db.connect(settings, "reader", autocommit=True) as reader:
        reader.execute("SELECT count(*) FROM schema_migrations")


def test_a_refused_login_is_one_error_line(
    postgres_alone: Settings, cli: Callable[..., Result]
) -> None:
    """A server that answers but refuses the role: `clickguard slo-report` (the reader role)
    names the cause and the settings to check, without a traceback (the server's own FATAL
    line, for real). Not `migrate`: it bootstraps, setting the configured passwords."""
    s = postgres_alone
    result = cli(["slo-report"], CLICKGUARD_PG_READER_PASSWORD="not-the-password")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException: no traceback
    assert result.output == (
        f'Error: PostgreSQL: connection to server at "{s.pg_host}", port {s.pg_port} failed:'
        f' FATAL: password authentication failed for user "{s.pg_reader_user}"; check the'
        " CLICKGUARD_PG_* settings (`clickguard config` shows them)\n"
    )
