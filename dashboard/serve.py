"""Node entry of the stack's ``dashboard`` node: ``python -m dashboard.serve``.

Runs ``streamlit run dashboard/app.py`` in this process, so the node's pid is Streamlit's. The
flags keep it local and quiet: headless, bound to ``dashboard_host``, no usage statistics, no
file watcher (nothing polls the source tree), no toolbar menu for viewers. Streamlit also polls
its two ``config.toml`` paths every 200 ms whatever ``fileWatcherType`` says
(``streamlit.web.bootstrap._install_config_watchers``); a node whose flags are fixed at start
has nothing to reload, so that watcher is not installed (``quiet_config_watchers``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from clickguard.settings import REPO_ROOT, Settings, get_settings, refuse_exposed_defaults

APP = Path(__file__).resolve().parent / "app.py"


def streamlit_args(settings: Settings) -> list[str]:
    """The arguments of ``streamlit`` that serve the dashboard."""
    return [
        "run", str(APP),
        "--server.headless=true",
        f"--server.address={settings.dashboard_host}",
        f"--server.port={settings.dashboard_port}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--client.toolbarMode=viewer",
        "--global.developmentMode=false",
    ]


def quiet_config_watchers() -> None:
    """No 200 ms polling of ``~/.streamlit/config.toml`` and ``./.streamlit/config.toml``: two
    timer wake-ups of a thread pool, 10 a second, on an idle dashboard. A Streamlit that no
    longer has the hook fails ``tests/unit/dashboard`` (pinned version), not the node."""
    import streamlit.web.bootstrap as bootstrap

    bootstrap._install_config_watchers = lambda flag_options: None


def main() -> None:
    settings = get_settings()
    refuse_exposed_defaults(settings, "dashboard", settings.dashboard_host)
    # `dashboard` and `clickguard` import from the checkout even without an editable install
    # (the app runs in this process: sys.path is enough, no PYTHONPATH for a child)
    sys.path.insert(0, str(REPO_ROOT))
    quiet_config_watchers()
    from streamlit.web import cli

    cli.main(streamlit_args(settings), prog_name="streamlit")


if __name__ == "__main__":
    main()
