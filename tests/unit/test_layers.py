"""The import layers cannot rot: every module's imports follow the arrows the README draws.

    core (clickguard) <- apps (streaming_job, api, clickguard_dagster, dashboard)
    core <- clickguard_producer <- clickguard_stack <- clickguard_proof <- clickguard_cli

A tool may import the core and the tools below it; an app imports only the core (never a tool,
never another app); the core imports nothing of ours above it; the CLI, at the top, may import
anything. Imports are read from the AST of every module, including imports inside functions and
under ``TYPE_CHECKING``, so a lazy import is no way around a rule. Module paths written as strings
(``"pkg.mod:attr"`` for lazy commands, ``python -m pkg.mod`` argv) are checked to exist.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from clickguard.settings import REPO_ROOT

CORE = "clickguard"
APPS = ("streaming_job", "api", "clickguard_dagster", "dashboard")
TOOLS = ("clickguard_producer", "clickguard_stack", "clickguard_proof", "clickguard_cli")
PACKAGES = (CORE, *APPS, *TOOLS)

# what each package may import besides itself
ALLOWED: dict[str, set[str]] = {
    CORE: set(),
    **{app: {CORE} for app in APPS},
    "clickguard_producer": {CORE},
    "clickguard_stack": {CORE, "clickguard_producer"},
    "clickguard_proof": {CORE, "clickguard_producer", "clickguard_stack"},
    "clickguard_cli": set(PACKAGES),
}
# module-level exceptions, each with its reason; keep this list short
EXCEPTIONS: dict[str, set[str]] = {
    # times the daily_sessions asset function itself (cold and warm Spark) in-process
    "clickguard_proof.bench_dagster": {"clickguard_dagster"},
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((REPO_ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found.append((".".join(parts), path))
    return found


def imported(tree: ast.AST) -> set[str]:
    """Top-level packages of ours that a module's AST imports (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n.split(".")[0] for n in names} & set(PACKAGES)


def violations(module: str, tree: ast.AST) -> list[str]:
    pkg = module.split(".")[0]
    allowed = ALLOWED[pkg] | {pkg} | EXCEPTIONS.get(module, set())
    return [f"{module} imports {target}" for target in sorted(imported(tree) - allowed)]


def test_every_package_is_layered() -> None:
    top = {p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").exists()}
    assert top - {"tests"} == set(PACKAGES), "a new top-level package needs a layer here"


def test_no_import_points_up_or_across() -> None:
    bad = [v for mod, path in modules() for v in violations(mod, ast.parse(path.read_text()))]
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("clickguard.spark", "from clickguard_stack.setup import fetch_jars"),
        ("streaming_job.supervisor", "def f():\n    from clickguard_stack import manager"),
        ("clickguard_dagster.assets.slo", "import clickguard_proof.slo"),
        ("api.routes.slo", "from streaming_job import sink"),
        ("clickguard_producer.core", "from clickguard_stack.manager import Stack"),
        ("clickguard_stack.nodes", "from clickguard_proof import results"),
        ("clickguard_proof.chaos", "from clickguard_cli.cli import main"),
        ("clickguard_proof.demo", "from api.main import app"),
    ],
)
def test_a_back_arrow_is_caught(module: str, source: str) -> None:
    assert violations(module, ast.parse(source))


def test_allowed_arrows_pass() -> None:
    assert not violations("clickguard_cli.cli", ast.parse("import clickguard_dagster.cli"))
    assert not violations("clickguard_proof.chaos", ast.parse("from clickguard_stack import nodes"))
    assert not violations("api.routes.slo", ast.parse("from clickguard import slo"))


_NAME = r"((?:" + "|".join(PACKAGES) + r")(?:\.\w+)*)"
# "-m", "pkg.mod" (an argv), module_argv=["pkg.mod", ...] (a stack node) and "pkg.mod:attr"
# (a lazy command, an ASGI app)
MODULE_STRING = re.compile(
    rf"""["']-m["'],\s*["']{_NAME}["']|module_argv=\[["']{_NAME}["']|["']{_NAME}:\w+["']"""
)


def test_module_strings_name_real_modules() -> None:
    """``"clickguard_proof.slo:slo_report"``, ``"-m", "streaming_job.job"`` and the like exist."""
    missing = []
    for mod, path in modules():
        for names in MODULE_STRING.findall(path.read_text()):
            name = next(n for n in names if n)
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:  # its parent package is gone too
                found = False
            if not found:
                missing.append(f"{mod}: {name}")
    assert not missing, "module strings naming no module:\n" + "\n".join(missing)
