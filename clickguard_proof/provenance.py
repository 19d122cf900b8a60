"""Where a number came from: command line, date, machine, load, git commit, software versions.

A figure without its conditions cannot be checked or reproduced, so every result file gets the
same block from :func:`provenance` (``results.write_results`` adds it; no command fills it in by
hand). Kept free of matplotlib so the CLI can call :func:`mark_start` cheaply.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard.settings import REPO_ROOT


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_START: dict[str, Any] = {"at": _now(), "load_avg": _load_avg()}


def mark_start() -> None:
    """Record the load average and time as the command starts (the CLI calls it first)."""
    _START.update(at=_now(), load_avg=_load_avg())


def command_line(argv: list[str] | None = None, main_spec: str | None = None) -> str:
    """The command as a user would type it again: ``clickguard <sub> <args>`` when run through
    the CLI (entry point or ``python -m clickguard_cli``), ``python -m <module> <args>`` for a
    module run directly; arguments shell-quoted so the line runs as written."""
    argv = list(sys.argv if argv is None else argv)
    if main_spec is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        main_spec = getattr(spec, "name", None)
    if not argv:
        return ""
    prog, args = argv[0], shlex.join(argv[1:])
    if Path(prog).name == "clickguard" or main_spec in ("clickguard_cli",
                                                        "clickguard_cli.__main__"):
        head = "clickguard"
    elif main_spec:
        head = f"python -m {main_spec.removesuffix('.__main__')}"
    else:
        head = f"python {shlex.quote(prog)}"
    return f"{head} {args}".rstrip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    ram = round(mem_kb / 1024 / 1024, 1)
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "memory_gb": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1_5_15": _load_avg(),
        "measured_at": _now(),
        "nproc": os.cpu_count(),
        "ram_gb": ram,
        "kernel": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
    }


def _git() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": run("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _kafka_version() -> str | None:
    """The Kafka version of the jars the local brokers run (from their file names)."""
    try:
        from clickguard.jars import jar_dir
        from clickguard.settings import get_settings

        for jar in sorted(jar_dir(get_settings(), "kafka").glob("kafka-server-*.jar")):
            m = re.match(r"kafka-server-(\d+\.\d+\.\d+)\.jar$", jar.name)
            if m:
                return m.group(1)
    except Exception:  # noqa: BLE001 - provenance must never fail a measured run
        return None
    return None


def _postgres_version() -> str | None:
    """``postgres --version`` of the binaries the local stack uses (cheap: no connection)."""
    try:
        from clickguard.settings import get_settings
        from clickguard_stack.nodes import find_pg_bin

        bin_dir = find_pg_bin(get_settings())
        if bin_dir is None:
            return None
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=5)
        m = re.search(r"(\d+(?:\.\d+)*)", out.stdout)
        return m.group(1) if m else None
    except Exception:  # noqa: BLE001 - provenance must never fail a measured run
        return None


def versions() -> dict[str, str | None]:
    """Software the figures depend on; None where unknown."""
    return {
        "python": platform.python_version(),
        "pyspark": _dist_version("pyspark"),
        "kafka": _kafka_version(),
        "confluent_kafka": _dist_version("confluent-kafka"),
        "postgres": _postgres_version(),
        "dagster": _dist_version("dagster"),
        "clickguard": _dist_version("clickguard"),
    }


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
# where a stack runs, not how: left out of the human line (kept in the json)
PLACEMENT_WORDS = ("_PORT", "_HOME", "_HOST", "_URL", "_DIR")


def settings_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The ``CLICKGUARD_*`` variables the command ran with (secrets masked): a result measured
    with, say, ``CLICKGUARD_KAFKA_JVM_OPTS`` set must say so, the command line does not."""
    env = os.environ if environ is None else environ
    return {k: ("***" if any(w in k for w in SECRET_WORDS) else v)
            for k, v in sorted(env.items()) if k.startswith("CLICKGUARD_")}


def provenance(command: str | None = None) -> dict[str, Any]:
    """The one provenance block every result file carries (see module docstring)."""
    return {
        "command": command if command is not None else command_line(),
        "started_at": _START["at"],
        "generated_at": _now(),
        "machine": machine(),
        "load_avg_start": _START["load_avg"],
        "load_avg_end": _load_avg(),
        "git": _git(),
        "versions": versions(),
        "settings_env": settings_env(),
    }


def provenance_line(p: dict[str, Any]) -> str:
    """One Markdown line with the provenance, for the top of every result's .md."""
    m = p.get("machine") or {}
    start, end = p.get("load_avg_start"), p.get("load_avg_end")
    load = (f"load {start[0]} → {end[0]}" if start and end
            else f"load {end[0]} at the end" if end else "load unknown")
    commit = (p.get("git") or {}).get("commit") or "unknown"
    dirty = " (+ uncommitted changes)" if (p.get("git") or {}).get("dirty") else ""
    v = {k: x for k, x in (p.get("versions") or {}).items() if x}
    soft = ", ".join(f"{k} {x}" for k, x in v.items())
    how = {k: x for k, x in (p.get("settings_env") or {}).items()
           if not any(w in k for w in (*PLACEMENT_WORDS, *SECRET_WORDS))}
    if how:
        soft += " · settings from the environment: " + ", ".join(
            f"{k}={x}" for k, x in how.items())
    return (f"Provenance: `{p.get('command') or 'command not recorded'}` · "
            f"{p.get('generated_at', '?')} · {m.get('cpu') or 'unknown CPU'}, "
            f"{m.get('nproc') or m.get('cpus')} cores, {m.get('ram_gb') or m.get('memory_gb')} GB "
            f"RAM, {m.get('kernel', '?')} · {load} · commit {commit[:12]}{dirty} · {soft}")
