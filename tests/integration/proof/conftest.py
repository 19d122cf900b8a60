"""Fixtures of the proof tests: application nodes of the real stack, left as they were found."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clickguard.stack.manager import Stack


def _node_up(stack: Stack, name: str) -> Iterator[Stack]:
    started = stack.node(name).pid() is None
    stack.up([name], timeout=300)
    yield stack
    if started:
        stack.node(name).stop()


@pytest.fixture
def streaming(stack: Stack) -> Iterator[Stack]:
    """Node `streaming` up (the real Spark job); stopped afterwards if the test started it."""
    yield from _node_up(stack, "streaming")


@pytest.fixture
def api_node(stack: Stack) -> Iterator[Stack]:
    """Node `api` up; stopped afterwards if the test started it."""
    if "api" not in stack.resolve(None):
        pytest.skip("api.serve is not in this checkout")
    yield from _node_up(stack, "api")
