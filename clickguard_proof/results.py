"""Writing a result set: one JSON file, one Markdown file and PNG plots in a results folder.

Shared by every bench/chaos/report command so the layout is the same everywhere:
``<out>/<name>.json``, ``<out>/<name>.md``, ``<out>/<name>*.png``. Every JSON gets a
``provenance`` block (command, date, machine, load, commit, versions) and every .md its line, here
in one place, so no command can forget them.

A run that must not be quoted (a fault that did not take effect, a half-started stack) is marked
``"valid": false`` with an ``"invalid_reason"`` in its JSON; ``clickguard proof table`` drops it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or the bench box

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from clickguard_proof.provenance import machine, provenance, provenance_line

__all__ = ["machine", "md_table", "provenance", "write_results"]


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_results(
    out: Path, name: str, data: dict[str, Any], markdown: str, figures: dict[str, Figure]
) -> list[Path]:
    """Write ``name``.json, ``name``.md and one PNG per figure (``name``-<key>.png or
    ``name``.png for the key ""); returns the paths written. Adds the provenance block (and a
    top-level ``command`` when the writer set none) unless ``data`` already has one."""
    out.mkdir(parents=True, exist_ok=True)
    prov = data.get("provenance") or provenance()
    data = {**data, "provenance": prov}
    data.setdefault("command", prov["command"])
    paths = [out / f"{name}.json", out / f"{name}.md"]
    paths[0].write_text(json.dumps(data, indent=2, default=str) + "\n")
    paths[1].write_text(_with_provenance(markdown, prov).rstrip() + "\n")
    for key, fig in figures.items():
        p = out / (f"{name}-{key}.png" if key else f"{name}.png")
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


def _with_provenance(markdown: str, prov: dict[str, Any]) -> str:
    """The provenance line right under the title (or first, when there is no title)."""
    line = provenance_line(prov)
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        return "\n".join([lines[0], "", line, *lines[1:]])
    return "\n".join([line, "", *lines])
