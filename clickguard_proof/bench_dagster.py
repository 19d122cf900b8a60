"""Run time of ``daily_sessions`` on N generated events.

``python -m clickguard_proof.bench_dagster``.

Events are inserted with ``generate_series`` on days of 2020 (event ids ``bench-*``) so real
traffic is untouched; the asset is then materialized for exactly those days (run config date
range), once with a cold Spark session and once warm. Writes JSON, Markdown and a PNG.

``--shell`` times the command a user types instead, ``dagster asset materialize --select
daily_sessions`` in a new process (Dagster's import, code load and run start included), with the
same run config; "cold" is then the first such run against the Spark it uses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click
import dagster as dg
import matplotlib.pyplot as plt

from clickguard import db
from clickguard.cli_types import COUNT
from clickguard.dagster_env import prepare_home
from clickguard.settings import Settings, get_settings
from clickguard_dagster.assets.sessions import daily_sessions
from clickguard_dagster.resources import build_resources
from clickguard_proof.results import machine, md_table, write_results

FIRST_DAY = date(2020, 1, 1)
INSERT = """
INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source,
  session_id, event_type, item_id, category, price, quantity, page, kafka_partition,
  kafka_offset, batch_id)
SELECT 'bench-' || g, ts, ts, ts, ts, now(), 'bench', ((g / %(days)s) / 8) %% 40000, typ,
  g %% 5000, 'cat-' || (g %% 40),
  CASE WHEN typ = 'purchase' THEN 10 + (g %% 100) END,
  CASE WHEN typ = 'purchase' THEN 1 + g %% 3 END, '/p/' || (g %% 20), 0, g, 0
FROM generate_series(0, %(n)s - 1) AS g,
LATERAL (SELECT timestamptz '2020-01-01 00:00:00+00' + (g %% %(days)s) * interval '1 day'
  + ((g / %(days)s) * (86399.0 / (%(n)s / %(days)s))) * interval '1 second' AS ts,
  (ARRAY['page_view', 'click', 'click', 'click', 'add_to_cart', 'click', 'purchase',
         'page_view'])[1 + (g * 7 / %(days)s) %% 8] AS typ) AS t
"""


@click.command()
@click.option("--events", "n", type=COUNT, default=1_000_000, show_default=True)
@click.option("--days", type=COUNT, default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir)")
@click.option("--shell", is_flag=True,
              help="Time `dagster asset materialize --select daily_sessions` as a new process.")
def main(n: int, days: int, out: Path | None, shell: bool) -> None:
    """Insert N events over DAYS days and time daily_sessions (cold and warm Spark)."""
    settings = get_settings()
    last = FIRST_DAY + timedelta(days=days - 1)
    with db.connect(settings, "writer", autocommit=True) as conn:
        click.echo(f"bench: removing earlier bench rows, inserting {n:,} events over {days} days")
        conn.execute("DELETE FROM events WHERE event_id LIKE 'bench-%%'")
        t0 = time.monotonic()
        conn.execute(INSERT, {"n": n, "days": days})
        conn.execute("ANALYZE events")
        insert_s = time.monotonic() - t0
        click.echo(f"bench: inserted in {insert_s:.1f} s")
    config = {"ops": {"daily_sessions": {"config": {
        "start_date": FIRST_DAY.isoformat(), "end_date": last.isoformat()}}}}
    resources = build_resources(settings)
    runs: list[dict[str, Any]] = []
    for label in ("cold", "warm"):
        click.echo(f"bench: materializing daily_sessions ({label} Spark session"
                   f"{', from the shell' if shell else ''}) ...")
        t0 = time.monotonic()
        steps: dict[str, float] = {}
        if shell:
            materialize_from_shell(settings, config)
            wall = time.monotonic() - t0
            events, sessions = stored_counts(settings, last)
            steps = newest_run_steps(settings)
        else:
            result = dg.materialize([daily_sessions], resources=resources, run_config=config)
            wall = time.monotonic() - t0
            md = result.asset_materializations_for_node("daily_sessions")[0].metadata
            read, written = md["source_rows"].value, md["rows_written"].value
            if not isinstance(read, int) or not isinstance(written, int):
                raise click.ClickException(f"daily_sessions metadata without row counts: {md}")
            events, sessions = read, written
        runs.append({
            "run": label, "seconds": round(wall, 1), "events": events, "sessions": sessions,
            "events_per_s": round(events / wall), "steps_s": steps,
        })
        click.echo(f"bench: {label}: {wall:.1f} s, {runs[-1]['sessions']:,} sessions")
    # where the asset's Spark ran: the Connect server (CLICKGUARD_SPARK_REMOTE, no JVM per run)
    # or a Spark started by the run on spark_master
    spark = (f"Connect {settings.spark_remote}" if settings.spark_remote
             else settings.spark_master)
    how = ("`dagster asset materialize --select daily_sessions`, a new process per run"
           if shell else "in-process `dg.materialize`")
    data = {"events": n, "days": days, "insert_s": round(insert_s, 1), "runs": runs,
            "how": how,
            "spark_master": spark, "spark_remote": settings.spark_remote, "machine": machine()}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["run"] for r in runs], [r["seconds"] for r in runs], color=["#888", "#2a7"])
    for i, r in enumerate(runs):
        ax.text(i, r["seconds"], f"{r['seconds']} s", ha="center", va="bottom")
    ax.set_ylabel("wall seconds")
    ax.set_title(f"daily_sessions on {n:,} events ({spark})")
    rows = [[r["run"], r["seconds"], f"{r['events']:,}", f"{r['sessions']:,}",
             f"{r['events_per_s']:,}",
             ", ".join(f"{k} {v:.1f} s" for k, v in r["steps_s"].items()) or "–"] for r in runs]
    markdown = (
        f"# daily_sessions run time\n\n{n:,} events over {days} days, inserted in "
        f"{insert_s:.1f} s; Spark `{spark}`; {how}.\n\n"
        + md_table(["run", "seconds", "events", "sessions", "events/s",
                    "steps of the run (asset, then its checks)"], rows)
    )
    paths = write_results(out or settings.results_dir, "dagster_daily_sessions", data, markdown,
                          {"": fig})
    with db.connect(settings, "writer", autocommit=True) as conn:
        conn.execute("DELETE FROM daily_sessions WHERE session_day BETWEEN %s AND %s",
                     (FIRST_DAY, last))
        conn.execute("DELETE FROM asset_day_watermarks WHERE day BETWEEN %s AND %s",
                     (FIRST_DAY, last))
        conn.execute("DELETE FROM events WHERE event_id LIKE 'bench-%%'")
    click.echo("bench: wrote " + ", ".join(str(p) for p in paths))


def materialize_from_shell(settings: Settings, config: dict[str, Any]) -> None:
    """``dagster asset materialize`` as the README shows it plus ``--config-json`` (``config``:
    the bench's days only), on the stack's Dagster instance."""
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    env = {**os.environ, "DAGSTER_HOME": str(prepare_home(settings)),
           "DAGSTER_MODULE_NAME": "clickguard_dagster.definitions"}
    cmd = [dagster, "asset", "materialize", "--select", "daily_sessions",
           "--config-json", json.dumps(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(
            f"{' '.join(cmd[:5])} exited {done.returncode}:\n{done.stderr[-3000:]}")


def newest_run_steps(settings: Settings) -> dict[str, float]:
    """Seconds of each step of the instance's newest run: the asset's, then its checks' step
    (``dagster asset materialize --select daily_sessions`` runs the asset's checks too), then
    each check's own seconds inside that step (``check <name>``: they run side by side)."""
    instance = dg.DagsterInstance.from_config(str(prepare_home(settings)))
    try:
        run = instance.get_runs(limit=1)[0]
        steps: dict[str, float] = {}
        for rec in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
            event = rec.dagster_event
            if event is not None and event.step_key is not None:
                data = event.event_specific_data
                steps[event.step_key] = round(getattr(data, "duration_ms", 0.0) / 1000, 1)
        for rec in instance.all_logs(run.run_id,
                                     of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            event = rec.dagster_event
            evaluation = event.event_specific_data if event is not None else None
            if isinstance(evaluation, dg.AssetCheckEvaluation):
                seconds = evaluation.metadata.get("seconds")
                if isinstance(seconds, dg.FloatMetadataValue) and seconds.value is not None:
                    steps[f"check {evaluation.check_name}"] = round(seconds.value, 1)
        return steps
    finally:
        instance.dispose()


def stored_counts(settings: Settings, last: date) -> tuple[int, int]:
    """Events the run read (from its watermark rows) and the sessions it wrote."""
    with db.connect(settings, "reader") as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(source_rows), 0) FROM asset_day_watermarks"
            " WHERE asset_key = 'daily_sessions' AND day BETWEEN %(a)s AND %(b)s),"
            " (SELECT count(*) FROM daily_sessions WHERE session_day BETWEEN %(a)s AND %(b)s)",
            {"a": FIRST_DAY, "b": last}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


if __name__ == "__main__":
    main()
