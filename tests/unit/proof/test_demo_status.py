"""The demo's status line: the nodes it started that are no longer healthy, its rate window."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from clickguard.ledger import RATE_WINDOW_S
from clickguard.settings import Settings
from clickguard_proof.demo import MIN_RATE_WINDOW_S, Status, rate_window_s, unhealthy_nodes
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


def test_the_rate_is_over_the_time_streamed_in_the_first_minute() -> None:
    """Over a full minute from the start, 1,000 events/s read 66 at 5 s and 959 at 55 s."""
    assert rate_window_s(0.2) == MIN_RATE_WINDOW_S  # not over a fraction of a batch cycle
    assert rate_window_s(12.5) == 12.5
    assert rate_window_s(600.0) == RATE_WINDOW_S  # then the last minute, as /stream counts it
