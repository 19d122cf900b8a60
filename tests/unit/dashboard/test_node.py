"""The stack's ``dashboard`` node: after the API, Streamlit's health URL, the serve module."""

from __future__ import annotations

from clickguard.settings import Settings
from clickguard_stack.manager import Stack, build_nodes
from clickguard_stack.nodes import PythonNode


def test_the_stack_starts_the_dashboard_after_the_api() -> None:
    s = Settings(_env_file=None, dashboard_port=8599)  # type: ignore[call-arg]
    nodes = build_nodes(s)
    node = nodes["dashboard"]
    assert isinstance(node, PythonNode)
    assert (node.port, node.needs, node.module_argv) == (8599, ["api"], ["dashboard.serve"])
    assert node.health_url == "http://127.0.0.1:8599/_stcore/health"
    assert list(nodes)[-1] == "dashboard"
    assert "dashboard" in Stack(s, echo=lambda _m: None).resolve(None)  # its code is present
