"""The demo's status line: the nodes it started that are no longer healthy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from clickguard.settings import Settings
from clickguard_proof.demo import Status, unhealthy_nodes
from clickguard_stack.manager import Stack


def test_a_node_without_a_process_is_named_down(tmp_path: Path) -> None:
    stack = Stack(Settings(home=tmp_path / "run"))  # nothing started under this home
    states = unhealthy_nodes(stack, ["kafka-2", "postgres"])
    assert states == {"kafka-2": "down", "postgres": "down"}


def test_the_line_shows_unhealthy_nodes_only_when_there_are_some() -> None:
    st = Status(datetime(2026, 12, 4, 1, 2, 3, tzinfo=UTC), 5.0, 1000.0, 12, 5000, 1, 2, 3)
    assert "NOT HEALTHY" not in st.line()
    st.unhealthy = {"kafka-2": "down", "streaming": "starting"}
    assert st.line().endswith("| NOT HEALTHY: kafka-2 down, streaming starting")

