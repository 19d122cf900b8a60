"""`clickguard bench cpu`: CPU and RSS of every node at 0, 1,000 and 5,000 events/s (issue 10).

With the whole stack up, each step starts `clickguard produce --anomaly-every 0` at the step's
rate (none for 0), waits a warm-up, then samples every node's process tree from /proc
(:mod:`clickguard_stack.usage`) for ``--step-s`` seconds: CPU in % of one core and of all the
machine's cores, mean and max RSS (and PSS, which does not double-count shared pages such as
PostgreSQL's shared buffers). The producer is its own row, outside the stack's total. The whole
machine's busy share (/proc/stat) is recorded too: on a shared machine it says how much of the
time went to processes that are not ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clickguard.cli_types import NON_NEGATIVE, POSITIVE, RATES_OR_IDLE
from clickguard.settings import Settings, get_settings
from clickguard_stack import usage

# issue 10 targets, in % of all the machine's cores and GiB. RSS is summed from /proc's kB
# (KiB) and shown in MiB: every "MB" of the rss_mb_* keys and of docs/performance.md is a MiB
IDLE_TARGET_PCT = 5.0
RATE_1K_TARGET_PCT = 40.0
RSS_TARGET_GB = 4.0
PRODUCER = "producer"
PREWARM_SETTLE_S = 20.0
DAGSTER_CODE = "dagster-code"  # the node whose children are Dagster's runs
PSS_EVERY = 5  # PSS at every 5th sample (10 s at the default --sample-s): see measure()


def node_pids(settings: Settings) -> dict[str, int | None]:
    """The stack's nodes (start order) and their main pid; None when down."""
    from clickguard_stack.manager import Stack

    stack = Stack(settings, echo=lambda _m: None)
    return {name: stack.nodes[name].pid() for name in stack.resolve(None)}


def _clickguard_argv() -> list[str]:
    return [sys.executable, "-m", "clickguard_cli"]


def start_producer(rate: int, duration_s: float, summary: Path, log: Path) -> subprocess.Popen:
    """`clickguard produce` at ``rate`` without anomalies, as a user runs it (own process)."""
    argv = [
        *_clickguard_argv(), "produce", "--rate", str(rate), "--duration", f"{duration_s:.0f}",
        "--anomaly-every", "0", "--quiet", "--summary", str(summary),
    ]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def measure(
    pids: dict[str, int | None], seconds: float, sample_s: float,
    progress: Callable[[float], None] | None = None, pss_every: int = PSS_EVERY,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Sample every tree for ``seconds``: CPU over the whole window, RSS per sample, PSS every
    ``pss_every``-th sample (reading it walks every mapping of every process: on a whole stack
    ≈ 0.1 s of CPU, ten times the rest of a sample), and the sampler's own CPU. ``on_round``
    runs after every sample."""
    cores = os.cpu_count() or 1
    own0, own_t0 = _own_cpu_s(), time.monotonic()
    first = usage.sample_trees(pids)
    threads0 = {n: usage.tree_thread_ticks(s.pids) for n, s in first.items()}
    busy0 = usage.machine_busy_ticks()
    rss: dict[str, list[int]] = {n: [s.rss_kb] for n, s in first.items()}
    pss: dict[str, list[int]] = {n: [s.pss_kb] for n, s in first.items()}
    series: list[dict[str, Any]] = []
    prev = first
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds:
        time.sleep(min(sample_s, max(0.05, seconds - elapsed)))
        with_pss = (len(series) + 1) % pss_every == 0
        now = usage.sample_trees(pids, with_pss=with_pss)
        point: dict[str, Any] = {"t": round(time.monotonic() - t0, 2)}
        for n, s in now.items():
            rss[n].append(s.rss_kb)
            if with_pss:
                pss[n].append(s.pss_kb)
            point[n] = round(usage.cpu_percent(prev[n], s), 1) if s.pids else None
        series.append(point)
        prev = now
        if on_round:
            on_round()
        if progress:
            progress(time.monotonic() - t0)
    busy1 = usage.machine_busy_ticks()
    threads1 = {n: usage.tree_thread_ticks(s.pids) for n, s in prev.items()}
    nodes: dict[str, Any] = {}
    for n in pids:
        a, b = first[n], prev[n]
        alive = bool(a.pids and b.pids)
        one = usage.cpu_percent(a, b) if alive else None
        nodes[n] = {
            "pid": pids[n],
            "processes": len(b.pids),
            "cpu_pct_one_core": None if one is None else round(one, 2),
            "cpu_pct_machine": None if one is None else round(one / cores, 2),
            "rss_mb_mean": round(sum(rss[n]) / len(rss[n]) / 1024, 1),
            "rss_mb_max": round(max(rss[n]) / 1024, 1),
            "pss_mb_mean": round(sum(pss[n]) / len(pss[n]) / 1024, 1),
            # where the node's CPU went: thread groups, % of one core
            "hot_threads": usage.hot_threads(threads0[n], threads1[n], b.at - a.at)
            if alive else [],
            "jit_pct_one_core": usage.jit_percent(threads0[n], threads1[n], b.at - a.at)
            if alive else None,
        }
    d_busy, d_total = busy1[0] - busy0[0], busy1[1] - busy0[1]
    wall = time.monotonic() - own_t0
    return {
        "sampler_cpu_pct_machine": round(100.0 * (_own_cpu_s() - own0) / wall / cores, 2)
        if wall > 0 else None,
        "seconds": round(prev[next(iter(prev))].at - first[next(iter(first))].at, 2)
        if pids else seconds,
        "cores": cores,
        "nodes": nodes,
        "machine_busy_pct": round(100.0 * d_busy / d_total, 1) if d_total else None,
        "series": series,
    }


def prewarm(rate: int, seconds: float, work: Path, echo: Callable[[str], None]) -> None:
    """Load the stack at ``rate`` for ``seconds``, then let it settle.

    A freshly started JVM spends its first minutes compiling (C1/C2 compiler threads were the
    largest idle consumers of a just-started stack), and the first step to carry data would
    pay for the data path's compilation. A stack a user has had up for a while has done that
    once; the budget is about that steady state, so the one-time cost is paid here, outside
    every window (and reported as the prewarm's duration in the result).
    """
    echo(f"prewarm: {rate:,} ev/s for {seconds:.0f}s (JIT compilation outside the windows)")
    proc = start_producer(rate, seconds, work / "producer-prewarm.json", work / "producer.log")
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < seconds + 120:
        time.sleep(5)
        echo(f"prewarm: {time.monotonic() - t0:.0f}/{seconds:.0f}s")
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    elif proc.returncode != 0:
        raise click.ClickException(
            f"the prewarm producer exited with code {proc.returncode}; see {work / 'producer.log'}"
        )
    settle = min(PREWARM_SETTLE_S, seconds)  # the stream drains what it was sent
    echo(f"prewarm: done; settling {settle:.0f}s")
    time.sleep(settle)


def run_cpu_bench(
    settings: Settings, rates: list[int], step_s: float, warmup_s: float, sample_s: float,
    echo: Callable[[str], None] = print, workdir: Path | None = None, prewarm_s: float = 0.0,
) -> dict[str, Any]:
    """Every step in turn (after an optional prewarm); returns the result document."""
    import json

    from clickguard_stack.nodes import run_workers

    pids = node_pids(settings)
    down = [n for n, p in pids.items() if not p]
    if down:
        raise click.ClickException(
            f"nodes down: {', '.join(down)}; the budget is measured on the whole stack: "
            "start it with `clickguard stack up`"
        )
    work = workdir or Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    work.mkdir(parents=True, exist_ok=True)
    if prewarm_s > 0 and max(rates) > 0:
        prewarm(max(rates), prewarm_s, work, echo)
    steps: list[dict[str, Any]] = []
    for i, rate in enumerate(rates):
        label = f"step {i + 1}/{len(rates)} {rate:,} ev/s"
        proc = None
        summary = work / f"producer-{rate}.json"
        if rate > 0:
            # the producer runs past the window so it never stops inside it
            proc = start_producer(rate, warmup_s + step_s + 5, summary, work / "producer.log")
        echo(f"{label}: warm-up {warmup_s:.0f}s")
        time.sleep(warmup_s)
        if proc is not None and proc.poll() is not None:
            raise click.ClickException(
                f"the producer exited early (code {proc.returncode}); see {work / 'producer.log'}"
            )
        watched = {**pids, **({PRODUCER: proc.pid} if proc else {})}
        last = [0.0]
        runs: set[int] = set()

        def look_for_runs(code: int | None = pids.get(DAGSTER_CODE), runs: set[int] = runs) -> None:
            if code:
                runs.update(run_workers(code))

        def progress(t: float, label: str = label, last: list[float] = last) -> None:
            if t - last[0] >= 10 or t >= step_s:
                last[0] = t
                echo(f"{label}: sampled {t:.0f}/{step_s:.0f}s")

        look_for_runs()
        m = measure(watched, step_s, sample_s, progress, on_round=look_for_runs)
        produced = None
        if proc is not None:
            try:
                proc.wait(timeout=warmup_s + step_s + 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if summary.exists():
                produced = json.loads(summary.read_text())
        stack_nodes = {n: v for n, v in m["nodes"].items() if n != PRODUCER}
        total_pct = sum(v["cpu_pct_machine"] or 0.0 for v in stack_nodes.values())
        jit_one = sum(v.get("jit_pct_one_core") or 0.0 for v in stack_nodes.values())
        step = {
            "rate": rate,
            **m,
            "stack_cpu_pct_machine": round(total_pct, 2),
            "stack_cpu_pct_one_core": round(total_pct * m["cores"], 2),
            "stack_jit_pct_one_core": round(jit_one, 2),
            "stack_rss_mb_max": round(sum(v["rss_mb_max"] for v in stack_nodes.values()), 1),
            "stack_pss_mb_mean": round(sum(v["pss_mb_mean"] for v in stack_nodes.values()), 1),
            "producer_summary": _producer_brief(produced),
            "dagster_runs": len(runs),
        }
        # a saturated machine cannot produce at the target: the step then measured less load
        eps = (produced or {}).get("throughput_eps")
        step["produced_eps"] = eps
        step["reached_rate"] = rate == 0 or (eps is not None and eps >= 0.9 * rate)
        if not step["reached_rate"]:
            echo(f"{label}: WARNING the producer reached only {eps or 0:,.0f} ev/s")
        steps.append(step)
        if runs:
            echo(f"{label}: WARNING {len(runs)} Dagster run(s) ran during the step and count in "
                 f"{DAGSTER_CODE}'s figures (a batch run starts Spark: about a core); is a sensor "
                 "such as live_batch_sensor on? (Dagster UI, Automation)")
        echo(f"{label}: stack {step['stack_cpu_pct_machine']:.1f} % of {m['cores']} cores, "
             f"RSS {step['stack_rss_mb_max']:,.0f} MiB (machine busy {m['machine_busy_pct']} %, "
             f"this sampler {m['sampler_cpu_pct_machine']} %)")
    return {"rates": rates, "step_s": step_s, "warmup_s": warmup_s, "sample_s": sample_s,
            "prewarm_s": prewarm_s, "steps": steps, "verdict": verdict(steps)}


def _producer_brief(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    if not summary:
        return None
    keys = ("sent", "acknowledged", "failed", "throughput_eps", "duration_s")
    return {k: summary.get(k) for k in keys}


def verdict(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 10 targets checked on the steps that were run (None = step not run)."""
    by_rate = {s["rate"]: s for s in steps}
    idle, k1, k5 = by_rate.get(0), by_rate.get(1000), by_rate.get(5000)
    # a step whose producer fell short of its rate says nothing about that rate
    k1 = k1 if k1 is None or k1.get("reached_rate", True) else None
    k5 = k5 if k5 is None or k5.get("reached_rate", True) else None
    return {
        "idle_le_5pct": None if idle is None else idle["stack_cpu_pct_machine"] <= IDLE_TARGET_PCT,
        "rate_1000_le_40pct": None if k1 is None
        else k1["stack_cpu_pct_machine"] <= RATE_1K_TARGET_PCT,
        "rss_5000_le_4gb": None if k5 is None
        else k5["stack_rss_mb_max"] <= RSS_TARGET_GB * 1024,
    }


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per node, then the stack's totals, then the producer (outside the totals)."""
    steps = result["steps"]
    names: list[str] = []
    for s in steps:
        names += [n for n in s["nodes"] if n not in names and n != PRODUCER]

    def row(label: str, cpu: Callable[[dict], Any], rss: Callable[[dict], Any]) -> dict:
        out: dict[str, Any] = {"node": label}
        for s in steps:
            out[f"CPU % 1 core @{s['rate']}"] = cpu(s)
            out[f"RSS MiB @{s['rate']}"] = rss(s)
        return out

    def node(name: str, key: str) -> Callable[[dict], Any]:
        return lambda s: (s["nodes"].get(name) or {}).get(key)

    rows = [row(n, node(n, "cpu_pct_one_core"), node(n, "rss_mb_max")) for n in names]
    rows.append(row("**stack total**", lambda s: s["stack_cpu_pct_one_core"],
                    lambda s: s["stack_rss_mb_max"]))
    cores = steps[0]["cores"] if steps else "?"
    rows.append(row(f"stack, % of {cores} cores", lambda s: s["stack_cpu_pct_machine"],
                    lambda s: None))
    rows.append(row("of it, JVM JIT compiler threads (% of 1 core)",
                    lambda s: s.get("stack_jit_pct_one_core"), lambda s: None))
    rows.append(row("whole machine busy %", lambda s: s["machine_busy_pct"], lambda s: None))
    rows.append(row("of it, this sampler (% of the cores)",
                    lambda s: s.get("sampler_cpu_pct_machine"), lambda s: None))
    rows.append(row("Dagster runs during the step", lambda s: s.get("dagster_runs"),
                    lambda s: None))
    rows.append(row("producer ev/s reached", lambda s: s.get("produced_eps") if s["rate"] else None,
                    lambda s: None))
    if any(PRODUCER in s["nodes"] for s in steps):
        rows.append(row(PRODUCER, node(PRODUCER, "cpu_pct_one_core"),
                        node(PRODUCER, "rss_mb_max")))
    return rows


def plot(result: dict[str, Any]) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        steps = result["steps"]
        names = list(dict.fromkeys(n for s in steps for n in s["nodes"]))  # first seen, once
        ax1, ax2 = fig.subplots(1, 2)
        width = 0.8 / max(1, len(steps))
        x = list(range(len(names)))
        for j, s in enumerate(steps):
            off = (j - (len(steps) - 1) / 2) * width
            cpu = [(s["nodes"].get(n) or {}).get("cpu_pct_one_core") or 0 for n in names]
            rss = [(s["nodes"].get(n) or {}).get("rss_mb_max") or 0 for n in names]
            ax1.bar([i + off for i in x], cpu, width=width, color=f"C{j}",
                    label=f"{s['rate']:,} ev/s")
            # the JVMs' JIT compiler threads, inside each bar (hatched): warm-up, not load
            jit = [(s["nodes"].get(n) or {}).get("jit_pct_one_core") or 0 for n in names]
            ax1.bar([i + off for i in x], jit, width=width, fill=False, hatch="///",
                    edgecolor="black", linewidth=0,
                    label="of it, JIT compiler threads" if j == 0 else None)
            ax2.bar([i + off for i in x], rss, width=width, color=f"C{j}",
                    label=f"{s['rate']:,} ev/s")
        for ax, what in ((ax1, "CPU, % of one core"), (ax2, "RSS, MiB (process tree)")):
            ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel(what)
            ax.legend(fontsize=8)
        totals = ", ".join(f"{s['rate']:,}/s: {s['stack_cpu_pct_machine']:.1f} %"
                           for s in steps)
        ax1.set_title(f"stack CPU of all cores — {totals}", fontsize=8)
        ax2.set_title("stack RSS — " + ", ".join(
            f"{s['rate']:,}/s: {s['stack_rss_mb_max'] / 1024:.2f} GiB" for s in steps), fontsize=8)
        fig.tight_layout(rect=(0, 0, 1, 0.94))

    return draw


@click.command("cpu")
@click.option("--steps", "rates", type=RATES_OR_IDLE, default="0,1000,5000", show_default=True,
              help="Producer rates in events/s, comma-separated (0 = idle stack).")
@click.option("--step-s", type=POSITIVE,
              default=60.0, show_default=True,
              help="Sampling window per step, after the warm-up.")
@click.option("--warmup-s", type=NON_NEGATIVE, default=20.0, show_default=True,
              help="Seconds between starting the producer and sampling.")
@click.option("--prewarm-s", type=NON_NEGATIVE, default=90.0, show_default=True,
              help="Seconds at the highest rate before the first step, so the JVMs' one-time "
                   "JIT compilation falls outside the windows (0 = measure a cold stack).")
@click.option("--sample-s", type=POSITIVE,
              default=2.0, show_default=True,
              help="Interval of the RSS readings and of the CPU time series.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder [default: settings.results_dir].")
def cpu(rates: list[int], step_s: float, warmup_s: float, prewarm_s: float, sample_s: float,
        out: Path | None) -> None:
    """CPU (% of one core and of all cores) and RSS per node at several event rates."""
    from clickguard_proof.report import Report

    if step_s <= 0 or sample_s <= 0 or warmup_s < 0 or prewarm_s < 0:
        raise click.BadParameter(
            "--step-s and --sample-s must be > 0, --warmup-s and --prewarm-s >= 0"
        )
    settings = get_settings()
    result = run_cpu_bench(settings, rates, step_s, warmup_s, sample_s,
                           echo=lambda m: click.echo(m, err=True), prewarm_s=prewarm_s)
    v = result["verdict"]
    checked = [x for x in v.values() if x is not None]
    notes = [
        "CPU = utime+stime (+ reaped children) summed over each node's process tree from "
        "/proc, over the whole window; 100 % of one core = one core busy. `stack, % of N "
        "cores` = the stack total divided by the core count (issue 10 targets: idle ≤ 5 %, "
        "1,000 ev/s ≤ 40 %). RSS = max over the window of VmRSS summed over the tree "
        "(shared pages count once per process; json has PSS too). The producer "
        "(`clickguard produce --anomaly-every 0`) is not part of the stack total.",
        f"Targets: {', '.join(f'{k}: {x}' for k, x in v.items())}.",
        "`producer ev/s reached` = acknowledged / producing time; a step below 90 % of its "
        "rate is not checked against the targets (the machine could not produce that load).",
        f"Prewarm: {prewarm_s:.0f} s at {max(rates):,} ev/s before the first step (the JVMs' "
        "one-time JIT compilation, which a stack that has been up a while has behind it); "
        "`--prewarm-s 0` measures a just-started stack.",
        "`of it, JVM JIT compiler threads` = the CPU of every JVM's C1/C2 compiler threads "
        "inside the stack total: code paths being compiled for the first time (a just-started "
        "stack's idle paths go on being compiled for many minutes), not work that recurs; "
        "the targets are checked on the whole total.",
        "Whole machine busy % includes every process on the machine: when it is far above "
        "the stack's own share, the figures were taken on a busy machine; `this sampler` is "
        "this command's own share of it.",
        "`Dagster runs during the step` = runs seen under dagster-code at any sample (a batch "
        "run starts Spark: about a core); a step with one measured that run as well as its rate.",
    ]
    report = Report(
        name="bench-cpu", title="CPU and memory budget per node", data=result,
        rows=table_rows(result), notes=notes, plot=plot(result),
        passed=all(checked) if checked else None,
    )
    paths = report.write(out or settings.results_dir)
    click.echo(Path(paths["md"]).read_text())
    click.echo("written: " + ", ".join(str(p) for p in paths.values()))
