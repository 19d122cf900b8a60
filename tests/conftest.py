"""Shared fixtures: settings and the real local stack (started here if not already running)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from clickguard import db
from clickguard.settings import Settings, get_settings
from clickguard_stack.manager import INFRA, Stack


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    """The infrastructure nodes, healthy. Started (and stopped at the end) only if needed."""
    s = Stack(settings, echo=lambda _msg: None)
    started = [r.name for r in s.status() if r.name in INFRA and not r.healthy]
    if started:
        s.up(list(INFRA))
    yield s
    # leave the stack as we found it: stop what this session started, unless told to keep it
    if started and not os.environ.get("CLICKGUARD_KEEP_STACK"):
        s.down()


@pytest.fixture(scope="session")
def postgres_alone(settings: Settings) -> Iterator[Settings]:
    """PostgreSQL only (started if needed, stopped at the end if started here), bootstrapped:
    for tests that need no Kafka, registry or stream."""
    s = Stack(settings, echo=lambda _msg: None)
    started = not s.node("postgres").status().healthy
    if started:
        s.up(["postgres"])
    db.bootstrap(settings)
    yield settings
    if started and not os.environ.get("CLICKGUARD_KEEP_STACK"):
        s.node("postgres").stop()


@pytest.fixture
def pg(stack: Stack, settings: Settings) -> Iterator[psycopg.Connection]:
    """A writer-role connection to the application database (autocommit)."""
    with db.connect(settings, "writer", autocommit=True) as conn:
        yield conn
