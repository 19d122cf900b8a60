"""Writing a result set: one JSON file, one Markdown file and PNG plots in a results folder.

Shared by every bench/chaos/report command so the layout is the same everywhere:
``<out>/<name>.json``, ``<out>/<name>.md``, ``<out>/<name>*.png``.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or the bench box

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    load = os.getloadavg()
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_results(
    out: Path, name: str, data: dict[str, Any], markdown: str, figures: dict[str, Figure]
) -> list[Path]:
    """Write ``name``.json, ``name``.md and one PNG per figure (``name``-<key>.png or
    ``name``.png for the key ""); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(data, indent=2, default=str) + "\n")
    paths[1].write_text(markdown.rstrip() + "\n")
    for key, fig in figures.items():
        p = out / (f"{name}-{key}.png" if key else f"{name}.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths
