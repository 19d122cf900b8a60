"""`clickguard fuzz-stream` beside a running platform: its stream is back afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickguard_proof.fuzz import fuzz_stream
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)


def test_the_platforms_stream_runs_again_after_a_fuzz_run(stack: Stack, tmp_path: Path) -> None:
    """The fuzz run stops the platform's stream (never two jobs on one stack) and runs its own
    on private topics; afterwards the platform's stream must run again, on its own topic: it
    was left down, silently, after `clickguard fuzz-stream` beside the demo."""
    node = stack.node("streaming")
    topic = stack.settings.topic_raw
    stack.control("start", "streaming")
    try:
        before = node.pid()
        assert before is not None
        with fuzz_stream(tmp_path / "checkpoint") as run:
            during = node.pid()
            assert during not in (None, before)
            assert environ(during)["CLICKGUARD_TOPIC_RAW"] == run.settings.topic_raw != topic
        after = node.pid()
        assert after is not None and after != during
        assert environ(after).get("CLICKGUARD_TOPIC_RAW", topic) == topic
        assert node.status().healthy
    finally:
        stack.control("stop", "streaming")
