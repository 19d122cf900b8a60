"""A fresh scratch topic per test (never the raw topic the streaming job reads)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from clickguard.settings import Settings
from clickguard_producer.scratch import scratch_topic
from clickguard_stack.manager import Stack


@pytest.fixture
def topic(stack: Stack, settings: Settings) -> Iterator[str]:
    with scratch_topic(settings, f"test.producer.{uuid.uuid4().hex[:8]}") as name:
        yield name
