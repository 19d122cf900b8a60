"""Launcher of the Dagster processes: one instance (PostgreSQL storage) for UI, daemon and CLI.

``python -m clickguard.dagster_env webserver|daemon|code`` renders ``dagster.yaml`` (repo template)
into ``DAGSTER_HOME`` and execs the Dagster process; ``python -m clickguard.dagster_env home``
does only the rendering and prints the folder, for ``export DAGSTER_HOME=$(...)`` in the venv's
activate script, so a ``dagster asset materialize`` from the shell lands in the same instance
that the UI shows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from string import Template

from clickguard.settings import REPO_ROOT, Settings, get_settings, refuse_exposed_defaults

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
        pg_ssl_params=json.dumps(settings.pg_ssl_params),  # JSON is YAML: a flow mapping
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


LOCATION_NAME = "clickguard"


def code_port(settings: Settings) -> int:
    return settings.dagster_code_port or settings.dagster_port + 1


def stack_workspace(settings: Settings) -> Path:
    """Workspace of the stack's webserver and daemon: the ONE code server of the stack.

    With a ``python_module`` workspace each of them spawns its own code server, and the daemon
    replaces its own every 60 s (Dagster's RELOAD_WORKSPACE_INTERVAL), importing the definitions
    again each time: about a tenth of a core and 330 MB spent on an idle stack (issue 10).
    """
    path = prepare_home(settings) / "workspace.yaml"
    text = (
        "# written by clickguard.dagster_env: the stack's shared code server (node dagster-code)\n"
        "load_from:\n  - grpc_server:\n"
        f"      host: \"{settings.dagster_code_host or settings.dagster_host}\"\n"
        f"      port: {code_port(settings)}\n"
        f"      location_name: \"{LOCATION_NAME}\"\n"
    )
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def command(settings: Settings, role: str) -> list[str]:
    """argv of the ``webserver``, ``daemon`` or ``code`` server process (this venv's binaries)."""
    bin_dir = Path(sys.executable).parent
    if role == "webserver":
        return [
            str(bin_dir / "dagster-webserver"), "-h", settings.dagster_host,
            "-p", str(settings.dagster_port), "-w", str(stack_workspace(settings)),
        ]
    if role == "daemon":
        return [str(bin_dir / "dagster-daemon"), "run", "-w", str(stack_workspace(settings))]
    if role == "code":
        # loads the definitions before it listens: an open port means the code is loaded
        return [
            str(bin_dir / "dagster"), "api", "grpc", "-h", settings.dagster_host,
            "-p", str(code_port(settings)), "-m", MODULE_NAME, "--location-name", LOCATION_NAME,
            "--log-level", "warning",
        ]
    raise SystemExit(f"unknown role {role!r}: use webserver, daemon, code or home")


def watch_code_server_every(seconds: float) -> None:
    """Make this process's Dagster ask the code server for its id every ``seconds``.

    The webserver and the daemon each run a thread that calls the code server's GetServerId
    every ``dagster._grpc.server_watcher.WATCH_INTERVAL`` (1 s, no option or setting reaches
    it) to notice a replaced server: on an idle stack the two watchers cost ≈ 1 % of a core
    (client and server side, docs/performance.md, eleventh pass). Set before the workspace loads.
    """
    from dagster._grpc import server_watcher

    if not isinstance(getattr(server_watcher, "WATCH_INTERVAL", None), (int, float)):
        raise RuntimeError(  # a Dagster upgrade moved it: say so instead of polling every 1 s
            "dagster._grpc.server_watcher.WATCH_INTERVAL is gone in this Dagster version; "
            "update clickguard.dagster_env.watch_code_server_every"
        )
    server_watcher.WATCH_INTERVAL = seconds  # type: ignore[assignment]  # typed int; a float works


def main(argv: list[str]) -> None:
    settings = get_settings()
    role = argv[0] if argv else ""
    if role == "home":
        print(prepare_home(settings))
        return
    if role == "webserver":
        refuse_exposed_defaults(settings, "dagster-webserver", settings.dagster_host)
    argv_exec = command(settings, role)
    os.chdir(REPO_ROOT)
    env = process_env(settings)
    if role == "code":
        os.execve(argv_exec[0], argv_exec, env)
    # the webserver and the daemon run in this process, so their code-server watcher's interval
    # can be set (their console scripts' own entry points, with the same argv and environment)
    os.environ.clear()
    os.environ.update(env)
    watch_code_server_every(settings.dagster_code_watch_s)
    sys.argv = argv_exec
    if role == "webserver":
        from dagster_webserver.cli import main as run
    else:
        from dagster._daemon.cli import main as run
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
