"""``clickguard dlq-replay``: run the Dagster job ``dlq_replay`` from the shell.

The run is recorded in the platform's Dagster instance (PostgreSQL), so it shows in the UI
like a run launched there.
"""

from __future__ import annotations

from datetime import datetime

import click
import dagster as dg

from clickguard import db
from clickguard.cli_types import COUNT, ISO_TIME
from clickguard.contract import DlqReason
from clickguard.dagster_env import prepare_home
from clickguard.settings import get_settings


@click.command("dlq-replay")
@click.option("--reason", "reasons", multiple=True, type=click.Choice([r.value for r in DlqReason]),
              help="DLQ reason to replay (repeatable; default: every reason).")
@click.option("--since", type=ISO_TIME, default=None, help="detected_at >= this ISO 8601 time.")
@click.option("--until", type=ISO_TIME, default=None, help="detected_at < this ISO 8601 time.")
@click.option("--limit", type=COUNT, default=100_000, show_default=True)
@click.option("--include-replayed", is_flag=True, help="Also records replayed before.")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
def dlq_replay(
    reasons: tuple[str, ...], since: datetime | None, until: datetime | None, limit: int,
    include_replayed: bool, dry_run: bool,
) -> None:
    """Re-publish DLQ records (after a fix) to the raw topic, keeping their event_id."""
    from clickguard_dagster.jobs import dlq_replay as job
    from clickguard_dagster.resources import build_resources

    settings = get_settings()
    # Dagster's storage retries a refused connection for 20 s, then raises its own traceback
    with db.connect(settings, "writer", db=settings.pg_dagster_db):
        pass
    config = {
        "reasons": list(reasons), "since": since and since.isoformat(),
        "until": until and until.isoformat(), "limit": limit,
        "include_replayed": include_replayed, "dry_run": dry_run,
    }
    resources = {k: v for k, v in build_resources(settings).items() if k != "spark"}
    with dg.DagsterInstance.from_config(str(prepare_home(settings))) as instance:
        result = job.execute_in_process(
            run_config={"ops": {"replay_dlq_records": {"config": config}}},
            resources=resources, instance=instance, raise_on_error=False,
        )
        counts = result.output_for_node("replay_dlq_records") if result.success else None
    if counts is None:
        raise click.ClickException(f"dlq_replay run {result.run_id} failed; see the Dagster UI")
    click.echo(
        f"dlq-replay: selected {counts['selected']}, published {counts['published']}, "
        f"failed {counts['failed']}, skipped (no bytes) {counts['skipped_no_bytes']}"
        f"{' (dry run)' if dry_run else ''}; run {result.run_id}"
    )
