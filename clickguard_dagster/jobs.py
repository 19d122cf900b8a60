"""Jobs: the daily batch, the stream checks, ``event_partitions`` and ``dlq_replay``.

``event_partitions`` keeps ``events``' day partitions (clickguard/db/partitions.py): the days
ahead created, the days past the retention dropped, the side tables trimmed.
``event_partitions_schedule`` runs it hourly.

``dlq_replay`` re-publishes dead-lettered records (after the cause was fixed) to the raw topic
exactly as they came in: original key, value and headers (not the DLQ's ``clickguard.error.*``
headers), so ``event_id`` and a user's tracing headers are unchanged and the stream's dedup and
exactly-once accounting still hold; it marks them ``replayed_at`` and reports counts.
"""


from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from clickguard.contract import DlqReason
from clickguard.db import partitions
from clickguard.times import parse_time
from clickguard_dagster.assets.stream import stream_events
from clickguard_dagster.resources import KafkaResource, PostgresResource, RetentionResource

daily_batch_job = dg.define_asset_job(
    "daily_batch",
    selection=dg.AssetSelection.groups("batch"),
    description="Materialize every batch table (changed days only) with their checks.",
)
stream_checks_job = dg.define_asset_job(
    "stream_checks",
    selection=dg.AssetSelection.checks_for_assets(stream_events.key),
    description="Latency SLO and freshness checks of the stream's output.",
)


class DlqReplayConfig(dg.Config):
    """Which DLQ records to replay: reasons (empty = all) and a detected_at range."""

    reasons: list[str] = Field(
        default_factory=list,
        description="dlq_events.reason values, empty = all: "
        + ", ".join(r.value for r in DlqReason),
    )
    since: str | None = Field(None, description="detected_at >= this ISO 8601 time (UTC unless "
                              "it names an offset)")
    until: str | None = Field(None, description="detected_at < this ISO 8601 time (UTC unless "
                              "it names an offset)")
    limit: int = Field(100_000, ge=1)
    include_replayed: bool = False
    dry_run: bool = False

    @field_validator("reasons")
    @classmethod
    def _known_reasons(cls, reasons: list[str]) -> list[str]:
        """A misspelt reason selected nothing and the run reported success."""
        unknown = [r for r in reasons if r not in DlqReason._value2member_map_]
        if unknown:
            raise ValueError(f"unknown reason(s) {unknown}; known: "
                             f"{', '.join(r.value for r in DlqReason)}")
        return reasons

    @field_validator("since", "until")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        """Checked before the run selects anything (it failed in the query with a traceback);
        kept with its offset (UTC if it named none), so the query reads it as typed."""
        return None if value is None else parse_time(value).isoformat()


def select_dlq(postgres: PostgresResource, config: DlqReplayConfig) -> list[tuple[Any, ...]]:
    """(id, raw_key, raw_value, header keys, header values) of the records to replay."""
    with postgres.connect() as conn:
        return conn.execute(
            "SELECT id, raw_key, raw_value, raw_header_keys, raw_header_values"
            " FROM dlq_events WHERE (cardinality(%(reasons)s::text[]) = 0"
            "  OR reason = ANY(%(reasons)s::text[]))"
            " AND (%(since)s::timestamptz IS NULL OR detected_at >= %(since)s::timestamptz)"
            " AND (%(until)s::timestamptz IS NULL OR detected_at < %(until)s::timestamptz)"
            " AND (%(all)s OR replayed_at IS NULL)"
            " ORDER BY id LIMIT %(limit)s",
            {
                "reasons": config.reasons,
                "since": config.since,
                "until": config.until,
                "all": config.include_replayed,
                "limit": config.limit,
            },
        ).fetchall()


def replay(
    postgres: PostgresResource, kafka: KafkaResource, config: DlqReplayConfig
) -> dict[str, int]:
    """Publish the selected records to the raw topic (acks=all) and mark those acknowledged;
    returns counts."""
    rows = select_dlq(postgres, config)
    counts = {"selected": len(rows), "published": 0, "failed": 0, "skipped_no_bytes": 0}
    if config.dry_run or not rows:
        return counts
    producer = kafka.producer()
    delivered: list[int] = []
    failed: list[int] = []

    def on_delivery(dlq_id: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, _msg: Any) -> None:
            (failed if err is not None else delivered).append(dlq_id)

        return cb

    for dlq_id, key, value, header_keys, header_values in rows:
        if value is None:
            counts["skipped_no_bytes"] += 1
            continue
        headers: list[tuple[str, str | bytes | None]] = [
            (bytes(k).decode("utf-8", "surrogatepass"), None if v is None else bytes(v))
            for k, v in zip(header_keys or [], header_values or [], strict=True)
        ]
        producer.produce(
            kafka.topic_raw, value=bytes(value), key=bytes(key) if key is not None else None,
            headers=headers or None, on_delivery=on_delivery(dlq_id),
        )
        producer.poll(0)
    remaining = producer.flush(60)
    counts["published"] = len(delivered)
    counts["failed"] = len(failed) + remaining
    if delivered:
        with postgres.connect() as conn:
            conn.execute(
                "UPDATE dlq_events SET replayed_at = now() WHERE id = ANY(%s)", (delivered,)
            )
            conn.commit()
    return counts


@dg.op
def replay_dlq_records(
    context: dg.OpExecutionContext,
    config: DlqReplayConfig,
    postgres: PostgresResource,
    kafka: KafkaResource,
) -> dict[str, int]:
    """Re-publish selected DLQ records to the raw topic, keeping event_id: selected ->
    published (acknowledged by min ISR brokers) -> marked replayed_at."""
    counts = replay(postgres, kafka, config)
    context.log.info(f"dlq_replay: {counts}")
    context.add_output_metadata({k: v for k, v in counts.items()})
    if counts["failed"]:
        raise dg.Failure(f"{counts['failed']} record(s) not acknowledged", metadata=counts)
    return counts


@dg.job(name="dlq_replay")
def dlq_replay() -> None:
    """Replay DLQ records by reason and time range."""
    replay_dlq_records()


@dg.op
def maintain_event_partitions(
    context: dg.OpExecutionContext, postgres: PostgresResource, retention: RetentionResource
) -> dict[str, Any]:
    """Create the day partitions of events for today and the days ahead; drop those older than
    the retention (whole days: no DELETE, no bloat); trim the side tables by their retention."""
    with postgres.connect(autocommit=True) as conn:
        done = partitions.maintain(
            conn, retention.retention(), retention.events_partitions_ahead_days
        )
    summary = {
        "created": done.days.created, "busy": done.days.busy, "dropped": done.drops.dropped,
        "drop_busy": done.drops.busy, "default_rows_deleted": done.drops.default_rows_deleted,
        "trimmed": done.trimmed, "partitions": done.partitions,
        "oldest_day": done.oldest_day.isoformat() if done.oldest_day else None,
    }
    context.log.info(f"event_partitions: {summary}")
    if done.days.busy:  # rows of those days wait in events_default until a later run creates them
        context.log.warning(
            f"day partitions not created, events_default was locked: {done.days.busy}")
    if done.drops.busy:  # kept until a later run drops them
        context.log.warning(f"day partitions not dropped, events was locked: {done.drops.busy}")
    context.add_output_metadata({k: str(v) for k, v in summary.items()})
    return summary


@dg.job(name="event_partitions")
def event_partitions() -> None:
    """Day partitions of events: created ahead, dropped past CLICKGUARD_EVENTS_RETENTION_DAYS;
    late_events, anomalies, minute_counts, dlq_events and batch_ledger trimmed by age."""
    maintain_event_partitions()
