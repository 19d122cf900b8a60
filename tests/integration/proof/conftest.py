"""Fixtures of the proof tests: application nodes of the real stack, left as they were found."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from clickguard import db, procs
from clickguard import kafka as kafka_helpers
from clickguard_stack.manager import Stack


def _node_up(stack: Stack, name: str) -> Iterator[Stack]:
    started = stack.node(name).pid() is None
    stack.up([name], timeout=300)
    yield stack
    if started:
        stack.node(name).stop()


STREAM_TABLES = (
    "events, dlq_events, late_events, anomalies, batch_ledger, minute_counts, stream_heartbeat"
)


def reset_stream(stack: Stack) -> None:
    """A fresh default stream: empty raw topic, no checkpoint, empty stream tables.

    Other suites truncate ``batch_ledger`` for their own fixtures; a live stream whose ledger was
    emptied under it reports a lag that never drains, so every proof test starts from zero.
    """
    settings = stack.settings
    stack.node("streaming").stop()
    shutil.rmtree(settings.checkpoint_dir, ignore_errors=True)
    admin = kafka_helpers.admin(settings)
    for fut in admin.delete_topics([settings.topic_raw], operation_timeout=30).values():
        fut.result()
    assert procs.wait_until(
        lambda: settings.topic_raw not in admin.list_topics(timeout=5).topics, 60
    )

    def recreated() -> bool:
        kafka_helpers.ensure_topics(settings)  # raises while the deletion is still in progress
        return settings.topic_raw in admin.list_topics(timeout=5).topics

    assert procs.wait_until(recreated, 60)
    assert procs.wait_until(lambda: kafka_helpers.cluster_health(settings).ready(3), 60)
    with db.connect(settings, "writer", autocommit=True) as conn:
        conn.execute(f"TRUNCATE {STREAM_TABLES}")


@pytest.fixture
def streaming(stack: Stack) -> Iterator[Stack]:
    """Node `streaming` up on a fresh stream (the real Spark job); stopped afterwards."""
    reset_stream(stack)
    yield from _node_up(stack, "streaming")


@pytest.fixture
def api_node(stack: Stack) -> Iterator[Stack]:
    """Node `api` up; stopped afterwards if the test started it."""
    if "api" not in stack.resolve(None):
        pytest.skip("api.serve is not in this checkout")
    yield from _node_up(stack, "api")
