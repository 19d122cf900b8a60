"""Structured proof reports: ``<out>/<name>.json``, ``<name>.md`` and ``<name>.png``.

The files themselves are written by :func:`clickguard_proof.results.write_results` (the one
low-level writer, also used by ``bench producer``); :class:`Report` adds the common header every
chaos/SLO/capacity/API/demo result carries — when it was measured, on what machine (nproc, RAM,
kernel, CPU, load), by which command, a verdict — a Markdown table built from row dicts, and
one plot. Matplotlib runs on the Agg backend (results.py selects it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickguard_proof import results
from clickguard_proof.provenance import command_line
from clickguard_proof.results import machine

PlotFn = Callable[[Any], None]  # receives a matplotlib Figure and draws into it


def machine_info() -> dict[str, Any]:
    """nproc, RAM, kernel, CPU model: :func:`clickguard_proof.results.machine`."""
    return machine()


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|")


def md_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (columns = keys of the first row unless given)."""
    if not rows:
        return "_no rows_\n"
    cols = list(columns or rows[0].keys())
    return results.md_table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows]) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class Report:
    """What a proof command measured; ``write`` puts it on disk in the three formats."""

    name: str  # file stem, e.g. "chaos", "slo", "bench-capacity"
    title: str
    data: dict[str, Any]  # full results (JSON)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the Markdown table
    columns: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # method, caveats (Markdown paragraphs)
    plot: PlotFn | None = None
    passed: bool | None = None  # the command's own verdict, when it has one

    def write(self, out_dir: Path) -> dict[str, Path]:
        """Write ``<name>.json``, ``.md`` and ``.png`` into ``out_dir``; returns the paths."""
        import matplotlib.pyplot as plt

        now = datetime.now(UTC)
        info = machine_info()
        command = command_line()
        doc = {
            "name": self.name,
            "title": self.title,
            "generated_at": now.isoformat(timespec="seconds"),
            "command": command,
            "machine": info,
            "passed": self.passed,
            "table": self.rows,
            "data": self.data,
            "notes": self.notes,
        }
        # round-trip through our encoder so numpy values and datetimes are plain JSON
        doc = json.loads(json.dumps(doc, default=_json_default))
        load = info.get("load_avg_1_5_15") or ["?"]
        md = [
            f"# {self.title}",
            "",
            f"Measured {now:%Y-%m-%d %H:%M} UTC with `{command}` on {info['nproc']} cores, "
            f"{info['ram_gb']} GB RAM, {info['kernel']} ({info['cpu'] or 'unknown CPU'}; "
            f"load average {load[0]} at the end).",
            "",
        ]
        if self.passed is not None:
            md += [f"**Verdict: {'PASS' if self.passed else 'FAIL'}**", ""]
        md += [md_table(self.rows, self.columns)]
        for note in self.notes:
            md += [note, ""]
        md += [f"![{self.title}]({self.name}.png)", "", f"Raw data: [{self.name}.json]"
               f"({self.name}.json)", ""]
        fig = plt.figure(figsize=(10, 5.5), dpi=100)
        if self.plot is not None:
            self.plot(fig)
        else:
            ax = fig.add_subplot()
            ax.axis("off")
            ax.text(0.5, 0.5, "no plot for this report", ha="center", va="center")
        fig.suptitle(f"{self.title} — {now:%Y-%m-%d %H:%M} UTC", fontsize=11)
        written = results.write_results(out_dir, self.name, doc, "\n".join(md), {"": fig})
        from clickguard_proof.summary import write_index

        write_index(out_dir)  # the closing table always quotes the latest runs
        return {p.suffix.lstrip("."): p for p in written}


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds rounded to 0.1, keeping None."""
    return None if seconds is None else round(seconds * 1000.0, 1)
