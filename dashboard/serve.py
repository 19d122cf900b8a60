"""Node entry of the stack's ``dashboard`` node: ``python -m dashboard.serve``.

Replaces itself (exec) with ``streamlit run dashboard/app.py`` so the node's pid is Streamlit's.
The flags keep it local and quiet: headless, bound to ``dashboard_host``, no usage statistics,
no file watcher (nothing polls the source tree), no toolbar menu for viewers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clickguard.settings import REPO_ROOT, Settings, get_settings, refuse_exposed_defaults

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_argv(settings: Settings) -> list[str]:
    """The command line of the dashboard server."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless=true",
        f"--server.address={settings.dashboard_host}",
        f"--server.port={settings.dashboard_port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--client.toolbarMode=viewer",
        "--global.developmentMode=false",
    ]


def main() -> None:
    settings = get_settings()
    refuse_exposed_defaults(settings, "dashboard", settings.dashboard_host)
    argv = streamlit_argv(settings)
    env = dict(os.environ)
    # `dashboard` and `clickguard` import from the checkout even without an editable install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
