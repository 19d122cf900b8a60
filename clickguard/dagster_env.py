"""Launcher of the Dagster processes: one instance (PostgreSQL storage) for UI, daemon and CLI.

``python -m clickguard.dagster_env webserver|daemon`` renders ``dagster.yaml`` (repo template)
into ``DAGSTER_HOME`` and execs the Dagster process; ``python -m clickguard.dagster_env home``
does only the rendering and prints the folder, for ``export DAGSTER_HOME=$(...)`` in the venv's
activate script, so a ``dagster asset materialize`` from the shell lands in the same instance
that the UI shows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from string import Template

from clickguard.settings import REPO_ROOT, Settings, get_settings

TEMPLATE = REPO_ROOT / "dagster.yaml"
WORKSPACE = REPO_ROOT / "workspace.yaml"
MODULE_NAME = "clickguard_dagster.definitions"


def dagster_home(settings: Settings) -> Path:
    return settings.dagster_home or settings.home / "dagster-home"


def render_instance_yaml(settings: Settings) -> str:
    """The instance config for ``settings`` (storage in the ``pg_dagster_db`` database)."""
    return Template(TEMPLATE.read_text()).substitute(
        pg_host=settings.pg_host,
        pg_port=settings.pg_port,
        pg_dagster_db=settings.pg_dagster_db,
        pg_writer_user=settings.pg_writer_user,
        pg_writer_password=settings.pg_writer_password,
        dagster_home=dagster_home(settings),
    )


def prepare_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME with an up-to-date dagster.yaml; returns the folder."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    text = render_instance_yaml(settings)
    if not target.exists() or target.read_text() != text:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return home


def process_env(settings: Settings) -> dict[str, str]:
    """Environment of the webserver/daemon: DAGSTER_HOME; the code location comes from
    workspace.yaml, so an inherited DAGSTER_MODULE_NAME (from the activate script) is dropped:
    Dagster refuses both at once."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_MODULE_NAME"}
    env["DAGSTER_HOME"] = str(prepare_home(settings))
    return env


def command(settings: Settings, role: str) -> list[str]:
    """argv of the ``webserver`` or ``daemon`` process (binaries from this interpreter's venv)."""
    bin_dir = Path(sys.executable).parent
    if role == "webserver":
        return [
            str(bin_dir / "dagster-webserver"), "-h", settings.dagster_host,
            "-p", str(settings.dagster_port), "-w", str(WORKSPACE),
        ]
    if role == "daemon":
        return [str(bin_dir / "dagster-daemon"), "run", "-w", str(WORKSPACE)]
    raise SystemExit(f"unknown role {role!r}: use webserver, daemon or home")


def main(argv: list[str]) -> None:
    settings = get_settings()
    role = argv[0] if argv else ""
    if role == "home":
        print(prepare_home(settings))
        return
    argv_exec = command(settings, role)
    os.chdir(REPO_ROOT)
    os.execve(argv_exec[0], argv_exec, process_env(settings))


if __name__ == "__main__":
    main(sys.argv[1:])
