"""Response models: the field names of the original API (../shared/BRIEF.md) plus the new endpoints.

Every endpoint declares one of these as its ``response_model`` so /openapi.json is complete.
Datetimes serialize as ISO 8601 in UTC; numeric(…) columns are served as JSON numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable: validation_error, not_found, unauthorized…")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The one error shape of every 4xx/5xx response."""

    error: ErrorBody


class StreamRunState(BaseModel):
    """The streaming job as its supervisor reports it (stream_heartbeat 'streaming_supervisor')."""

    state: str = Field(description="running, restarting, crash-looping, stopped, or unknown")
    last_error: str | None = Field(None, description="Last error of a failed run (one line)")
    last_error_at: dt.datetime | None = Field(
        None, description="When that run ended: an old error under 'running' is history"
    )
    consecutive_failures: int = Field(0, description="Failed runs since the ledger last moved")
    last_batch_id: int | None = Field(None, description="Batch the last failed run was on")
    since: dt.datetime | None = Field(None, description="When the current state began")


class Health(BaseModel):
    status: str = Field(
        description="'healthy'; 'degraded' (stream crash-looping); 'unhealthy' (database down)"
    )
    database: str = Field(description="'connected' or 'disconnected'")
    version: str
    stream: StreamRunState | None = Field(None, description="null when the database is down")


class Stats(BaseModel):
    total_anomalies: int
    days_processed: int
    total_popular_items: int
    last_anomaly_detected: dt.datetime | None
    last_metrics_date: dt.date | None


class Anomaly(BaseModel):
    id: int
    session_id: int | None = Field(description="Set for session rules; null for TRAFFIC_SPIKE…")
    detected_at: dt.datetime
    window_start: dt.datetime
    window_end: dt.datetime
    click_count: int
    unique_items: int
    anomaly_score: float
    anomaly_type: str


class AnomalyTypeStat(BaseModel):
    anomaly_type: str
    count: int
    avg_score: float
    last_detected: dt.datetime | None


class TimelineBucket(BaseModel):
    hour: dt.datetime = Field(description="Start of the UTC hour (bucket of detected_at)")
    anomaly_count: int
    unique_sessions: int
    avg_score: float


class AnomalyMinute(BaseModel):
    minute: dt.datetime = Field(description="Start of the UTC minute (bucket of detected_at)")
    anomaly_type: str
    anomaly_count: int


class DailyMetric(BaseModel):
    metric_date: dt.date
    total_clicks: int
    total_purchases: int
    unique_sessions: int
    unique_items: int
    conversion_rate: float
    avg_session_duration_sec: float
    avg_clicks_per_session: float
    total_revenue: float
    avg_order_value: float


class FunnelStage(BaseModel):
    funnel_stage: str
    session_count: int
    percentage: float
    drop_rate: float


class MetricsSummary(BaseModel):
    days_processed: int
    total_clicks: int
    total_purchases: int
    total_sessions: int
    avg_conversion_rate: float
    total_revenue: float
    avg_clicks_per_session: float


class PopularItem(BaseModel):
    item_id: int
    category: str | None
    click_count: int
    purchase_count: int
    revenue: float
    rank: int
    click_to_purchase_ratio: float | None


class PopularCategory(BaseModel):
    category: str
    click_count: int
    purchase_count: int
    unique_items: int
    revenue: float
    rank: int


class TrendingItem(BaseModel):
    """An item's clicks in the last ``days`` days against the ``days`` before (popular_items)."""

    item_id: int
    category: str | None = Field(description="Category on the item's most recent day")
    recent_clicks: int = Field(description="Clicks in (anchor − days, anchor]")
    previous_clicks: int = Field(description="Clicks in (anchor − 2·days, anchor − days]")
    growth: float = Field(description="(recent − previous) / max(previous, 1)")
    rank: int = Field(description="1 = fastest growing")


class DlqReasonCount(BaseModel):
    reason: str
    count: int


class DlqRecord(BaseModel):
    id: int
    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    detail: str | None
    event_id: str | None
    kafka_ts: dt.datetime | None
    detected_at: dt.datetime
    replayed_at: dt.datetime | None


class DlqBucket(BaseModel):
    bucket: dt.datetime = Field(
        description="Start of the bucket: buckets step by their width from 2000-01-01 00:00 UTC "
        "(so from each midnight UTC when the width divides a day)"
    )
    reason: str
    count: int


class DlqReport(BaseModel):
    window_minutes: int
    total: int = Field(description="DLQ records detected in the window")
    by_reason: list[DlqReasonCount]
    recent: list[DlqRecord] = Field(description="Newest first")
    bucket_minutes: int | None = Field(None, description="Width of the `over_time` buckets")
    over_time: list[DlqBucket] | None = Field(
        None, description="Every record of the window counted per bucket and reason, oldest "
        "first; null unless `bucket_minutes` is given")


class SloStage(BaseModel):
    stage: str = Field(description="produce_to_kafka, kafka_to_spark, spark_to_db, end_to_end")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class SloReport(BaseModel):
    window_minutes: int
    samples: int = Field(description="Events (newest by commit_ts) the percentiles are over")
    stages: list[SloStage]


class LastBatch(BaseModel):
    query_id: str
    batch_id: int
    started_at: dt.datetime
    committed_at: dt.datetime
    input_rows: int
    stored: int
    dlq: int
    late: int
    duplicates: int
    anomalies: int
    duration_ms: int
    watermark: dt.datetime | None
    driver: str | None = Field(None, description="Driver that committed it (null before 0008)")
    driver_epoch: int | None = Field(None, description="Its lease epoch at the commit")


class ActiveDriver(BaseModel):
    """Which of the warm-standby streaming drivers runs the query (streaming_job/lease.py):
    after a failover the holder and epoch change, which is what an operator wants to see."""

    driver: str = Field(description="Driver id `d<slot>:<pid>@<host>`")
    epoch: int | None = Field(description="Lease epoch, the fencing token: +1 per takeover")
    source: str = Field(
        description="'lease': holder of the stream's lease; 'ledger': no lease is held now, "
        "this driver committed the newest batch"
    )
    since: dt.datetime | None = Field(
        None, description="When it acquired the lease (null when known from the ledger only)"
    )
    lease_expires_at: dt.datetime | None = Field(
        None, description="In the past = the holder stopped renewing (dead or paused): a standby "
        "may take over; null for source 'ledger'"
    )
    last_commit_at: dt.datetime | None = Field(
        None, description="Its newest batch commit at this epoch among the newest 100 batches"
    )


class Heartbeat(BaseModel):
    component: str
    beat_at: dt.datetime
    status: str
    age_sec: float


class ConsumerLag(BaseModel):
    total: int | None = Field(description="Sum over partitions of end offset − ledger offset")
    by_partition: dict[str, int]
    error: str | None = Field(description="Why the lag is unknown (Kafka unreachable, …)")


class StreamStatus(BaseModel):
    last_batch: LastBatch | None
    events_per_sec: float = Field(
        description="input rows of batches committed in the last 60 s, per second (over the"
        " time since the stream's first batch with rows while that is shorter, at least 5 s)")
    batches_last_minute: int
    heartbeats: list[Heartbeat]
    consumer_lag: ConsumerLag
    state: StreamRunState = Field(description="Supervisor's view: crash-looping = stuck")
    active_driver: ActiveDriver | None = Field(
        None, description="The driver running the stream: the lease holder, else the driver of "
        "the newest committed batch; null when neither is known"
    )


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: object) -> object:
    """Only ``YYYY-MM-DD`` strings: pydantic alone would also read '0' as a Unix timestamp."""
    if isinstance(value, str) and not _ISO_DAY.match(value):
        raise ValueError("expected an ISO date YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_day)]
"""A day in parameters (path or query): strictly ISO 8601 ``YYYY-MM-DD``."""

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# '+01:00' sent unencoded in a URL arrives as ' 01:00'
_SPACE_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def _iso_datetime(value: object) -> object:
    """Only ISO 8601 date-times: pydantic alone would also read '0' or '2024-03-10'."""
    if isinstance(value, str):
        if not _ISO_DATETIME.match(value):
            raise ValueError("expected an ISO 8601 datetime like 2024-03-10T12:00:00Z")
        return _SPACE_OFFSET.sub(r"\1+\2", value)
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    """No offset means UTC (the API's own datetimes are all UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_datetime), AfterValidator(_utc)]
"""A point in time in query parameters: ISO 8601 date and time, UTC when without offset."""


class SessionEvent(BaseModel):
    """One stored event of a session (the drill-down of GET /sessions/{session_id})."""

    event_id: str
    event_ts: dt.datetime
    event_type: str
    item_id: int | None
    category: str | None
    price: float | None
    quantity: int | None
    page: str | None
    source: str
    commit_ts: dt.datetime = Field(description="When the stream committed it to the database")


class AnomalyEvidence(BaseModel):
    """An anomaly of a session with what its rule saw against the threshold."""

    id: int
    anomaly_type: str
    detected_at: dt.datetime
    window_start: dt.datetime
    window_end: dt.datetime
    click_count: int
    unique_items: int
    anomaly_score: float
    observed: float = Field(description="The value the rule compared with its threshold")
    threshold: float | None
    baseline: float | None = Field(description="Expected value (TRAFFIC_SPIKE's EWMA mean)")
    details: dict[str, Any] = Field(description="The rule and its parameters, as stored")


class SessionDetail(BaseModel):
    session_id: int
    events: list[SessionEvent] = Field(description="Newest first (by event time)")
    anomalies: list[AnomalyEvidence] = Field(description="Newest first, at most 100")


class AssetFreshness(BaseModel):
    """When a Dagster batch asset last computed (asset_day_watermarks)."""

    asset_key: str
    last_computed_at: dt.datetime
    last_run_id: str | None = Field(description="Dagster run of the last computation")
    days_computed: int
    newest_day: dt.date
    day_computed_at: dt.datetime | None = Field(
        description="When the requested ``date`` was computed; null without date or if never"
    )
