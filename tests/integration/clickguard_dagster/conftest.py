"""Fixtures of the Dagster integration tests: clean tables, generated events, resources."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from clickguard.contract import EVENT_TYPES
from clickguard.settings import Settings
from clickguard_dagster.resources import build_resources
from tests.integration.clickguard_dagster.slack import SlackStandIn
from tests.integration.clickguard_dagster.smtp import SmtpRecorder

STATE_TABLES = (
    "events", "anomalies", "dlq_events", "batch_ledger", "stream_heartbeat", "daily_sessions",
    "daily_metrics", "session_funnel", "popular_items", "popular_categories",
    "anomaly_daily_summary", "asset_day_watermarks", "alert_history",
)
COLUMNS = (
    "event_id", "event_ts", "ingest_ts", "kafka_ts", "batch_start_ts", "commit_ts", "source",
    "session_id", "user_id", "event_type", "item_id", "category", "price", "quantity", "page",
    "referrer", "kafka_partition", "kafka_offset", "batch_id",
)
DAYS = (date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22))
CATEGORIES = ("shoes", "books", "toys", "garden", None)


@pytest.fixture
def clean(pg: psycopg.Connection) -> psycopg.Connection:
    """Empty tables: each test starts from a known state of its own stack's database."""
    for table in STATE_TABLES:
        pg.execute(f"DELETE FROM {table}")
    return pg


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    """Slack's Web API stand-in (records chat.postMessage)."""
    with SlackStandIn() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpRecorder]:
    """A real SMTP server (aiosmtpd) recording the messages it accepts."""
    with SmtpRecorder() as server:
        yield server


@pytest.fixture(scope="session")
def resources(stack: Any, settings: Settings) -> dict[str, Any]:
    return build_resources(settings)


def make_events(
    days: tuple[date, ...] = DAYS,
    sessions_per_day: int = 40,
    seed: int = 7,
    commit_ts: datetime | None = None,
    id_prefix: str = "e",
) -> list[tuple[Any, ...]]:
    """Rows for `events`: sessions with gaps above and below 30 min, some crossing midnight."""
    rng = random.Random(seed)
    commit = commit_ts or datetime.now(UTC) - timedelta(hours=2)
    rows: list[tuple[Any, ...]] = []
    n = 0
    for day in days:
        base = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for s in range(sessions_per_day):
            session_id = rng.randint(1, 60)  # ids repeat across days and within a day
            ts = base + timedelta(seconds=rng.randint(0, 86_399))
            for _ in range(rng.randint(1, 12)):
                gap = rng.choice([5, 40, 200, 1799, 1801, 2400, 7200])
                ts = ts + timedelta(seconds=gap, microseconds=rng.randint(0, 999_999))
                etype = rng.choice((*EVENT_TYPES[:6], "click", "click", "page_view"))
                item = rng.randint(1, 30) if etype != "page_view" or rng.random() < 0.3 else None
                cat = rng.choice(CATEGORIES) if item else None
                price = Decimal(rng.randint(100, 99_999)) / 100 if etype == "purchase" else None
                qty = rng.randint(1, 4) if etype == "purchase" else None
                n += 1
                ingest = ts + timedelta(milliseconds=rng.randint(0, 50))
                kafka = ingest + timedelta(milliseconds=rng.randint(1, 20))
                start = kafka + timedelta(milliseconds=rng.randint(10, 400))
                rows.append((
                    f"{id_prefix}{day:%m%d}-{s}-{n}", ts, ingest, kafka, start, commit, "test",
                    session_id, None, etype, item, cat, price, qty,
                    rng.choice(["/home", "/item", "/cart", None]), None, 0, n, 1,
                ))
    return rows


def insert_events(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor().copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(r)


@pytest.fixture
def events(clean: psycopg.Connection) -> Iterator[list[tuple[Any, ...]]]:
    rows = make_events()
    insert_events(clean, rows)
    yield rows
