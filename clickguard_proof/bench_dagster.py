"""Run time of ``daily_sessions`` on N generated events.

``python -m clickguard_proof.bench_dagster``.

Events are inserted with ``generate_series`` on days of 2020 (event ids ``bench-*``) so real
traffic is untouched; the asset is then materialized for exactly those days (run config date
range), once with a cold Spark session and once warm. Writes JSON, Markdown and a PNG.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click
import dagster as dg
import matplotlib.pyplot as plt

from clickguard import db
from clickguard.settings import get_settings
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
@click.option("--events", "n", default=1_000_000, show_default=True)
@click.option("--days", default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir)")
def main(n: int, days: int, out: Path | None) -> None:
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
        click.echo(f"bench: materializing daily_sessions ({label} Spark session) ...")
        t0 = time.monotonic()
        result = dg.materialize([daily_sessions], resources=resources, run_config=config)
        wall = time.monotonic() - t0
        md = result.asset_materializations_for_node("daily_sessions")[0].metadata
        events, sessions = md["source_rows"].value, md["rows_written"].value
        if not isinstance(events, int) or not isinstance(sessions, int):
            raise click.ClickException(f"daily_sessions metadata without row counts: {md}")
        runs.append({
            "run": label, "seconds": round(wall, 1), "events": events, "sessions": sessions,
            "events_per_s": round(events / wall),
        })
        click.echo(f"bench: {label}: {wall:.1f} s, {runs[-1]['sessions']:,} sessions")
    # where the asset's Spark ran: the Connect server (CLICKGUARD_SPARK_REMOTE, no JVM per run)
    # or a Spark started by the run on spark_master
    spark = (f"Connect {settings.spark_remote}" if settings.spark_remote
             else settings.spark_master)
    data = {"events": n, "days": days, "insert_s": round(insert_s, 1), "runs": runs,
            "spark_master": spark, "spark_remote": settings.spark_remote, "machine": machine()}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["run"] for r in runs], [r["seconds"] for r in runs], color=["#888", "#2a7"])
    for i, r in enumerate(runs):
        ax.text(i, r["seconds"], f"{r['seconds']} s", ha="center", va="bottom")
    ax.set_ylabel("wall seconds")
    ax.set_title(f"daily_sessions on {n:,} events ({spark})")
    rows = [[r["run"], r["seconds"], f"{r['events']:,}", f"{r['sessions']:,}",
             f"{r['events_per_s']:,}"] for r in runs]
    markdown = (
        f"# daily_sessions run time\n\n{n:,} events over {days} days, inserted in "
        f"{insert_s:.1f} s; Spark `{spark}`.\n\n"
        + md_table(["run", "seconds", "events", "sessions", "events/s"], rows)
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


if __name__ == "__main__":
    main()
