"""`clickguard bench api`: Locust headless against the running API and the bare baseline app.

The one command of the API benchmark. The measuring is ``api_bench.py``'s (``run_api_bench``
starts ``baseline_app.py`` on a free port with the same workers, runs ``locust -f
locustfile.py --headless`` against the baseline and then the API at the same offered load, and
parses Locust's CSV). This command brings the API node up if needed (unless ``--api-url`` names
another one), optionally loads the benchmark data set (``load_api_data.py``), and writes
``bench-api.json/.md/.png`` in the results folder with the common header (machine, date,
command) — req/s and p50/p95/p99 per endpoint, failures by cause (must be none), server CPU per
request, the API's ratio to the baseline and the target's verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from clickguard.cli_types import COUNT, COUNT_OR_ZERO, POSITIVE
from clickguard.settings import Settings, get_settings
from clickguard_proof.api_bench import TARGET_P99_MS, TARGET_RPS, failure_lines
from clickguard_proof.report import Report
from clickguard_stack.manager import Stack

SMOKE = {"duration_s": 12, "users": 10, "user_rate": 10.0}  # ~1,000 requests: every endpoint hit
SMOKE_LOAD_EVENTS = 20_000  # every endpoint has rows to return (no 404 for a missing day)
FULL = {"duration_s": 30, "users": 50, "user_rate": 25.0}


def run(settings: Settings, duration_s: int, users: int, user_rate: float,
        load_events: int | None, echo: Any = print, *, api_url: str | None = None,
        baseline: bool = True, api_user: str = "ApiUser") -> dict[str, Any]:
    """API node up (unless ``api_url`` names a running API elsewhere), optional data load,
    then api_bench.py's Locust runner; returns its result document."""
    from clickguard_proof.api_bench import run_api_bench

    if api_url is None:
        stack = Stack(settings, echo=lambda _m: None)
        if "api" not in stack.resolve(None):
            raise click.ClickException("the API code (api.serve) is not in this checkout")
        stack.up(["postgres", "api"])
    if load_events:
        from clickguard_proof.load_api_data import load

        where = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_db}"
        echo(f"loading the benchmark data set ({load_events:,} events) into {where}"
             + (" (CLICKGUARD_PG_*: it must be the database behind --api-url)" if api_url else ""))
        load(settings, events=load_events, anomalies=max(100, min(100_000, load_events // 10)),
             progress=echo)
    work = settings.home / "bench-api"
    return run_api_bench(settings, work, duration_s, users, user_rate, api_url=api_url,
                         baseline=baseline, progress=echo, api_user=api_user)


def api_report(result: dict[str, Any]) -> Report:
    rows = []
    for target in ("baseline", "api"):
        for r in result.get(target, []):
            rows.append({"target": target, "endpoint": r["name"], "requests": r["requests"],
                         "failures": r["failures"], "req/s": r["rps"], "p50 ms": r["p50_ms"],
                         "p95 ms": r["p95_ms"], "p99 ms": r["p99_ms"], "max ms": r["max_ms"]})
    total = {t: next((r for r in result.get(t, []) if r["name"] == "ALL"), None)
             for t in ("baseline", "api")}
    api_all, base_all = total["api"], total["baseline"]
    ratio = (round(api_all["rps"] / base_all["rps"], 3)
             if api_all and base_all and base_all["rps"] else None)
    failures = sum(r["failures"] for r in result.get("api", []) if r["name"] == "ALL")

    def draw(fig: Any) -> None:
        api_rows = [r for r in result.get("api", []) if r["name"] != "ALL"]
        ax = fig.add_subplot()
        xs = range(len(api_rows))
        for i, key in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            ax.bar([x + (i - 1) * 0.27 for x in xs], [r[key] for r in api_rows], 0.27,
                   label=key.removesuffix("_ms"))
        ax.set_xticks(list(xs), [f"{r['name']}\n{r['rps']} req/s" for r in api_rows],
                      rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_yscale("symlog", linthresh=1)  # one slow endpoint does not flatten the rest
        ax.axhline(TARGET_P99_MS, color="#d94040", ls=":", lw=0.8, label="p99 target")
        if base_all:
            ax.axhline(base_all["p99_ms"], color="grey", ls="--", lw=0.8,
                       label=f"baseline p99 ({base_all['rps']} req/s)")
        ax.legend(fontsize=8)

    causes = failure_lines(result)
    v = result["verdict"]
    cpu = [f"{t} server CPU {tot['server_cpu_s']} s, {tot['cpu_ms_per_request']} ms per request "
           f"(≈ {1000 / max(tot['cpu_ms_per_request'], 1e-9):.0f} req/s per core)"
           for t, tot in total.items() if tot and "cpu_ms_per_request" in tot]
    return Report(
        name="bench-api",
        title="API load test (Locust headless) vs. bare baseline app",
        data={**result, "api_to_baseline_rps": ratio},
        rows=rows,
        notes=[
            f"{result['users']} users × {result['user_rate']} req/s offered "
            f"({result['offered_rps']:.0f} req/s), {result['duration_s']} s per target; "
            f"{result['api_workers']} uvicorn workers, response cache TTL "
            f"{result['cache_ttl_s']} s, API users: {result.get('api_user', 'ApiUser')}; "
            f"data: {result.get('data')}; load average (1/5/15 min) before "
            f"{result.get('load_average_before')}, after {result.get('load_average_after')}.",
            f"API total {api_all['rps'] if api_all else '–'} req/s, p99 "
            f"{api_all['p99_ms'] if api_all else '–'} ms, {failures} failures; "
            f"API/baseline req/s = {ratio}.",
            *(["; ".join(cpu) + "."] if cpu else []),
            f"Target (≥ {TARGET_RPS:,.0f} req/s, p99 ≤ {TARGET_P99_MS:.0f} ms on each of "
            f"{', '.join(v['key_p99_ms']) or 'the key endpoints'}): "
            f"**{'met' if v['meets_target'] else 'NOT met'}** — {v['total_rps']} req/s, "
            f"p99 {v['key_p99_ms']}, {v['failures']} failures.",
            *(["Failures by cause: " + "; ".join(causes)] if causes else []),
            "Runner: clickguard_proof/api_bench.py "
            "(locust -f clickguard_proof/locustfile.py --headless); the "
            "locustfile also works with Locust's web UI. Original: 396 requests, p95 22 ms, "
            "p99 26 ms; later 237.7 req/s at 200 users, p95 420 ms, p99 580 ms.",
        ],
        plot=draw,
        passed=bool(api_all) and failures == 0,
    )


@click.command("api")
@click.option("--smoke", is_flag=True, help="CI mode: 10 users × 10 req/s for 12 s per target.")
@click.option("--duration", type=COUNT,
              default=None, help="Seconds per target (default 30).")
@click.option("--users", type=COUNT,
              default=None, help="Locust users (default 50).")
@click.option("--user-rate", type=POSITIVE,
              default=None, help="Requests/s per user (default 25).")
@click.option("--load-events", type=COUNT_OR_ZERO, default=None,
              help="First load this many benchmark events (load_api_data.py); "
              f"--smoke loads {SMOKE_LOAD_EVENTS:,} unless given.")
@click.option("--api-url", default=None,
              help="Benchmark the API at this URL instead of the local stack's api node (its data "
              "described by its own /stats).")
@click.option("--no-baseline", is_flag=True, help="Skip the bare uvicorn baseline run.")
@click.option("--user-class", "api_user", default="ApiUser", show_default=True,
              type=click.Choice(["ApiUser", "KeyEndpointsUser"]),
              help="Every endpoint, weighted, or only /anomalies, /stats, /metrics/summary.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def api(smoke: bool, duration: int | None, users: int | None, user_rate: float | None,
        load_events: int | None, api_url: str | None, no_baseline: bool, api_user: str,
        out: Path | None) -> None:
    """Locust against the API and the baseline app: req/s and p50/p95/p99 per endpoint."""
    s = get_settings()
    base = SMOKE if smoke else FULL
    if smoke and load_events is None:
        load_events = SMOKE_LOAD_EVENTS
    result = run(s, duration or int(base["duration_s"]), users or int(base["users"]),
                 user_rate or float(base["user_rate"]), load_events, echo=click.echo,
                 api_url=api_url, baseline=not no_baseline, api_user=api_user)
    report = api_report(result)
    paths = report.write(out or s.results_dir)
    for row in report.rows:
        if row["endpoint"] == "ALL":
            click.echo(f"{row['target']:<9} {row['req/s']:>8} req/s  p50 {row['p50 ms']} "
                       f"p95 {row['p95 ms']} p99 {row['p99 ms']} ms  failures {row['failures']}")
    for line in failure_lines(result):
        click.echo(f"failures: {line}")
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    if not report.passed:
        raise SystemExit(1)


if __name__ == "__main__":  # until `clickguard bench api` is wired into the bench group
    api()
