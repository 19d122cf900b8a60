"""One settings module for every process of the platform.

Every port, path, host and threshold comes from here, read from environment variables prefixed
``CLICKGUARD_`` (and from ``.env`` when present); ``.env.example`` documents each one. Pointing the
code at an external Kafka cluster, a managed PostgreSQL or a Spark cluster is configuration only:
set ``CLICKGUARD_KAFKA_BOOTSTRAP``, ``CLICKGUARD_PG_HOST``/``PORT`` or ``CLICKGUARD_SPARK_MASTER``,
plus ``CLICKGUARD_KAFKA_SECURITY_PROTOCOL``/``_SASL_*``/``_SSL_CA_LOCATION`` and
``CLICKGUARD_PG_SSLMODE``/``_SSLROOTCERT`` where the services require TLS and authentication.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLICKGUARD_"


def env_name(field: str) -> str:
    """The environment variable of setting ``field``: ``CLICKGUARD_FOO_BAR`` for ``foo_bar``."""
    return f"{ENV_PREFIX}{field.upper()}"


def invalid_settings(exc: ValidationError) -> str:
    """What is wrong in the configuration, by variable: ``CLICKGUARD_PG_PORT='abc': Input
    should be a valid integer ...``, for a CLI error instead of pydantic's traceback."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        value = err.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) else ""
        lines.append(f"{env_name(field) if field else 'settings'}{shown}: {err['msg']}")
    return ("invalid configuration (environment or .env): " + "; ".join(lines)
            + " (`clickguard config --env-example` lists every variable with its default)")


def env_value(value: object) -> str:
    """A setting's value as its variable's text: JSON for a list (pydantic-settings decodes a
    list field from JSON), ``str()`` otherwise."""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def pg_ssl_params(sslmode: str, sslrootcert: str | Path | None) -> dict[str, str]:
    """libpq's TLS keywords ``sslmode`` and (when set) ``sslrootcert``; pgjdbc and
    dagster-postgres take the same names and values."""
    return {"sslmode": sslmode, **({"sslrootcert": str(sslrootcert)} if sslrootcert else {})}


def pg_jdbc_url(host: str, port: int, dbname: str, ssl_params: Mapping[str, str]) -> str:
    """pgjdbc URL of database ``dbname`` for Spark's JDBC reads and writes, with the TLS keywords
    of :func:`pg_ssl_params`. ``stringtype=unspecified`` lets PostgreSQL cast Spark's strings to
    the column types."""
    ssl = "".join(f"&{k}={v}" for k, v in ssl_params.items())
    return f"jdbc:postgresql://{host}:{port}/{dbname}?stringtype=unspecified{ssl}"


def pg_jdbc_properties(user: str, password: str) -> dict[str, str]:
    """The connection properties Spark's JDBC source and sink take beside :func:`pg_jdbc_url`."""
    return {"user": user, "password": password, "driver": "org.postgresql.Driver"}


class Settings(BaseSettings):
    """Typed configuration; field ``foo_bar`` is read from ``CLICKGUARD_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=REPO_ROOT / ".env", extra="ignore"
    )

    @field_validator("*", mode="after")
    @classmethod
    def _in_range(cls, value: object, info: ValidationInfo) -> object:
        """Every port in 1-65535 and no negative number: no count, size, duration, rate or
        threshold here has a meaning below 0 (a negative ``stream_max_offsets_per_trigger`` was
        accepted and only failed inside Spark)."""
        name = info.field_name or ""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if name.endswith(("_port", "_port_base")) and not 1 <= value <= 65535:
            raise ValueError("a port must be between 1 and 65535")
        if value < 0:
            raise ValueError("must not be negative")
        if not math.isfinite(value):  # nan passes every comparison; inf is no rate or size
            raise ValueError("must be a finite number")
        return value

    # --- folders -------------------------------------------------------------------------------
    home: Path = Field(REPO_ROOT / ".run", description="Run folder: data, logs and pids of nodes")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Downloaded jars (git-ignored)")

    # --- Kafka ---------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="External bootstrap servers; unset = the local 3-node cluster"
    )
    kafka_nodes: int = 3
    kafka_broker_port_base: int = 19092
    kafka_controller_port_base: int = 19192
    # live heap after a full GC ≈ 45 MB once the log cleaner's buffer is 16 MiB (nodes.py)
    kafka_heap: str = "256m"
    # extra JVM options for the brokers, appended last (so they win), split on whitespace;
    # e.g. "-XX:TieredStopAtLevel=1" (C1 JIT only: a third of a percent of a core less per idle
    # broker, 1-2 % more each under load, so not the default; docs/performance.md, tenth pass);
    # "-XX:CompileThresholdScaling=1" undoes the brokers' lower JIT thresholds (nodes.py)
    kafka_jvm_opts: str = ""
    # a SIGKILLed broker stays in every ISR until the controller fences it after this long, so
    # acks=all writes stall that long (issue 10: at 5,000 ev/s the longest delivery with a
    # broker SIGKILLed ≈ this + 0.1-0.2 s; docs/producer.md). Heartbeats every 250 ms leave 6
    # per session, so a broker is only fenced after 1.5 s without any, not after a few delayed
    # ones on 2 busy cores (2,000 ms until 2026-12-06)
    kafka_session_timeout_ms: int = 1500
    kafka_heartbeat_interval_ms: int = 250
    # how long a follower's fetch waits at the leader for new records. A partition whose
    # leader moved joins the follower's next fetch to the new leader, so after a broker's loss
    # acks=all writes wait up to this long more: the active controller SIGKILLed at 5,000 ev/s,
    # delivery p99 2.4-4.7 s with 2,000 ms, 2.4-3.1 s with 1,000, 2.8-3.4 s with 500 (brokers
    # only; on the whole stack 3.3-4.0 s either way, split votes included). An idle
    # follower polls each leader this often: idle brokers 8.9-11.6 % of a core with 2,000,
    # 10.6-11.2 with 1,000, 11.4-11.5 with 500 (A/B 2026-12-06; docs/producer.md)
    kafka_replica_fetch_wait_ms: int = Field(
        1000, ge=100, description="replica.fetch.wait.max.ms of the brokers",
    )
    # a SIGKILLed active controller: the voters notice after this long, elect a new one, whose
    # sessions then start counting; KRaft's pre-vote keeps one starved voter from forcing an
    # election (both must miss the leader)
    kafka_quorum_fetch_timeout_ms: int = 1000
    # the two surviving voters often notice the dead leader in the same millisecond, both stand,
    # each votes for itself, and nobody wins: the next try waits a random 1-2 election timeouts.
    # 1,000 ms: 2 of 6 controller kills split, new controller after 2.34-2.44 s; 500 ms: 1 of 10,
    # after 1.32 s; elections without a split 0.6-1.1 s either way (docs/producer.md)
    kafka_quorum_election_timeout_ms: int = 500
    # a managed cluster (Confluent Cloud, MSK, Aiven...): applied to every Kafka client the
    # platform makes (clickguard.kafka.client_security, Spark's source: spark_kafka_options)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients reach the brokers; SASL_SSL for a managed cluster"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates; unset = "
        "the system's trust store"
    )
    topic_raw: str = "km.events.raw.v1"
    topic_dlq: str = "km.events.dlq.v1"
    topic_late: str = "km.events.late.v1"
    topic_bench: str = Field(
        "km.bench.producer.v1", description="Scratch topic of `clickguard bench producer`"
    )
    topic_raw_partitions: int = 6
    topic_partitions: int = 3
    topic_replication: int = 3
    topic_min_isr: int = 2

    # --- PostgreSQL ----------------------------------------------------------------------------
    pg_host: str = "127.0.0.1"
    pg_port: int = 15432
    pg_superuser: str = "postgres"
    pg_superuser_password: str = "clickguard-admin"
    pg_db: str = "clickguard"
    pg_dagster_db: str = "dagster"
    pg_writer_user: str = "clickguard_writer"
    pg_writer_password: str = "clickguard-writer"
    pg_reader_user: str = "clickguard_reader"
    pg_reader_password: str = "clickguard-reader"
    pg_registry_user: str = Field(
        "clickguard_registry", description="Role of the schema registry: owns its database only"
    )
    pg_registry_password: str = "clickguard-registry"
    pg_bin_dir: Path | None = Field(None, description="Folder of initdb/pg_ctl; found if unset")
    # 64MB (was 128): VmRSS summed over the node counted the shared buffers once per process
    # that had touched them (the stream's backend, the background writer, the checkpointer:
    # 946 MB at 5,000 ev/s for a 128 MB pool); the OS page cache holds what does not fit.
    # e2e p95 / p99 at 5,000 ev/s did not suffer (docs/performance.md, eighth pass)
    pg_shared_buffers: str = Field(
        "64MB", pattern=r"^[0-9]+(kB|MB|GB)$",
        description="shared_buffers of the local PostgreSQL node (given at each start)",
    )
    events_retention_days: int = Field(
        30, description="Days of events kept: the Dagster job event_partitions drops older day "
        "partitions and trims late_events, anomalies and minute_counts (0 = keep every day)"
    )
    dlq_retention_days: int = Field(
        30, description="Days of dlq_events kept, replayed or not (0 = keep every day)"
    )
    ledger_retention_days: int = Field(
        7, description="Days of batch_ledger kept; each query's newest batch is always kept "
        "(0 = keep every day)"
    )
    events_partitions_ahead_days: int = Field(
        7, description="Day partitions of events created ahead of today"
    )
    event_partitions_cron: str = Field(
        "7 * * * *", description="When event_partitions runs (cron, UTC)"
    )
    pg_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = (
        Field("prefer", description="libpq sslmode of every connection; verify-full for a "
              "managed PostgreSQL")
    )
    pg_sslrootcert: Path | None = Field(
        None, description="PEM file of the CA that signed the server's certificate (verify-ca, "
        "verify-full)"
    )

    # --- schema registry -----------------------------------------------------------------------
    registry_url: str | None = Field(
        None, description="External Confluent-compatible registry URL; unset = local Apicurio"
    )
    registry_username: str | None = Field(
        None, description="Basic-auth user of an external registry (Confluent Cloud: its API key)"
    )
    registry_password: str | None = None
    registry_port: int = 18081
    registry_heap: str = "384m"
    registry_management_port: int | None = Field(
        None, description="Apicurio's Quarkus management port; unset = registry_port + 1"
    )

    # --- Spark / streaming job -----------------------------------------------------------------
    spark_master: str = Field(
        "local[2]", description="Master of the streaming job's and the batch assets' own Spark "
        "(local mode, or e.g. spark://127.0.0.1:17077 for the stack's standalone cluster)",
    )
    spark_shuffle_partitions: int = 4
    # the optional Spark nodes of the local stack (`clickguard stack up spark-master ...`): a
    # standalone cluster from the jars pyspark ships, and a long-running Spark Connect server
    spark_cluster_up: bool = Field(
        False, description="Start the Spark nodes (master, workers, Connect) with the stack's "
        "default `up` (`make run`); off: started only when named",
    )
    spark_workers: int = Field(1, ge=1, le=8, description="Workers of the standalone cluster")
    spark_worker_cores: int = Field(1, ge=1, description="Cores each worker offers")
    spark_worker_memory: str = Field("1g", description="Memory each worker offers executors")
    spark_master_port: int = 17077
    spark_master_ui_port: int = 18080
    spark_worker_ui_port_base: int = Field(
        18090, description="Web UI of spark-worker-N: this + N - 1"
    )
    spark_connect_port: int = 15002
    spark_connect_ui_port: int = 14040
    spark_connect_master: str = Field(
        "local[2]", description="Master of the Spark Connect server's driver (local mode in one "
        "JVM, or the standalone cluster's spark://127.0.0.1:17077)",
    )
    spark_connect_heap: str = "1g"
    spark_remote: str | None = Field(
        None, description="Spark Connect URL for the Dagster batch assets (e.g. "
        "sc://127.0.0.1:15002); unset = each run starts its own local Spark",
    )
    stream_trigger_ms: int = Field(
        400, description="Micro-batch trigger. Spark's per-batch work is a fixed cost: 250 ms cut "
        "e2e p95 at 5,000 events/s to ~620 ms but cost ~70 % of the 2 cores at 1,000 events/s; "
        "400 ms ~48 % and p95 ~950 ms (docs/performance.md)",
    )
    stream_max_offsets_per_trigger: int = 50_000
    # Spark's Kafka source asks the partition leaders for the latest offsets with an admin client
    # whose calls wait for their leader until the API timeout (60 s by default): with a leader
    # SIGKILLed no batch ran until the broker came back (22 s in `clickguard chaos broker-kill`),
    # with one SIGSTOPped 30 s. Bounded, a call fails, Spark retries it with a new admin client,
    # which reads fresh metadata and finds the new leader (fenced after kafka_session_timeout_ms).
    # The API timeout is twice this, so one call outlives a request that timed out on a hung broker
    stream_kafka_request_timeout_ms: int = Field(
        2000, ge=500, description="Request timeout of the stream's Kafka clients (API: 2x)"
    )
    stream_watermark_minutes: float = 10.0
    stream_max_future_minutes: float = 5.0
    stream_restart_backoff_s: float = 2.0
    stream_restart_backoff_max_s: float = 30.0
    stream_crash_loop_runs: int = Field(
        3, ge=1, description="Failed job runs in a row without ledger progress = crash-looping"
    )
    stream_db_retry_s: float = Field(300.0, description="How long a batch retries a down DB")
    stream_kafka_wait_s: float = Field(
        120.0, description="How long a driver's first start waits for the raw topic to answer "
        "(`stack up` starts the stream while the brokers start)")
    stream_max_string_bytes: int = Field(
        32_768, description="Longest string field (UTF-8 bytes) stored; longer = DLQ unstorable"
    )
    stream_checkpoint_dir: Path | None = Field(
        None, description="Spark checkpoint folder; unset = $CLICKGUARD_HOME/streaming/checkpoint"
    )
    stream_cores_max: int | None = Field(
        None, ge=1, description="spark.cores.max of each streaming driver on a standalone "
        "cluster. Unset: the active driver takes every core and a standby waits with none, so a "
        "takeover waits for executors to be freed and launched (31-39 s); set to the cluster's "
        "cores / stream_drivers so each standby keeps its executors warm",
    )
    stream_drivers: int = Field(
        2, ge=1, le=4,
        description="Streaming drivers kept by the supervisor: 1 active + warm standbys (1 = none)",
    )
    stream_lease_ttl_s: float = Field(
        5.0, gt=0, description="Active driver's lease lifetime; a standby takes it when expired"
    )
    stream_lease_renew_s: float = Field(1.0, gt=0, description="Lease renewal interval")
    stream_lease_poll_s: float = Field(
        0.25, gt=0, description="How often a standby driver tries to take the lease"
    )
    stream_decode: Literal["driver", "workers", "executors"] = Field(
        "driver",
        description="Where a batch's records are decoded: the driver (collected as Arrow, no "
        "Python workers), Python workers (then collected), or executors, which also route and "
        "stage them in PostgreSQL so the driver holds no rows (scales with a cluster's workers)",
    )

    # --- anomaly thresholds --------------------------------------------------------------------
    high_frequency_clicks: int = 50
    bot_like_clicks: int = 50
    bot_like_unique_ratio: float = 0.1
    spike_z_threshold: float = 4.0
    spike_ewma_alpha: float = 0.3
    spike_min_events: int = 100
    spike_min_history_minutes: int = 3
    spike_min_relative_std: float = Field(
        0.1, description="Deviation floor as a share of the EWMA mean: a spike must be relative"
    )
    spike_dispersion: float = Field(
        4.0, description="Variance floor as a multiple of the mean: clicks cluster by session"
    )
    spike_level_shift_minutes: int = Field(
        3, description="Spike minutes in a row that make a new baseline level"
    )
    error_burst_per_minute: int = 100

    # --- API -----------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 2
    api_key: str | None = Field(None, description="When set, requests need header X-API-Key")
    api_cors_origins: list[str] = Field(default_factory=list)
    api_pool_min: int = 2
    api_pool_max: int = 8
    api_pool_timeout_s: float = 2.0
    api_statement_timeout_ms: int = 2000
    api_cache_ttl_s: float = Field(
        1.0, description="Per-worker cache of read responses; 0 = off (always fresh)"
    )
    api_batch_cache_ttl_s: float = Field(
        30.0, description="Cache TTL of /metrics/* and /items/* (daily batch tables)"
    )
    api_max_date_span_days: int = 366
    api_trending_rank_depth: int = Field(
        1000, description="/items/trending considers each day's top-N of popular_items"
    )
    api_slo_max_samples: int = 100_000
    api_lag_timeout_s: float = 1.0

    # --- dashboard (Streamlit; a client of the API only) ------------------------------------------
    dashboard_host: str = Field("127.0.0.1", description="Address the Streamlit dashboard binds")
    dashboard_sched_idle: bool = Field(
        True, description="Run the dashboard node under SCHED_IDLE: on a shared machine it only "
        "uses CPU that the API and the stream leave free (false = normal priority)",
    )
    dashboard_port: int = Field(8501, description="Port of the Streamlit dashboard")
    dashboard_api_url: str | None = Field(
        None, description="API the dashboard reads (key: api_key); unset = the local API"
    )
    dashboard_dagster_url: str | None = Field(
        None, description="Dagster UI the dashboard links to; unset = the local Dagster UI"
    )
    dashboard_refresh_s: float = Field(
        5.0, ge=1.0, description="How often the dashboard's Live page refreshes, seconds"
    )

    # --- Dagster -------------------------------------------------------------------------------
    dagster_host: str = "127.0.0.1"
    dagster_port: int = 3000
    dagster_code_host: str | None = Field(
        None, description="Host the UI and daemon reach the code server at; unset = dagster_host"
    )
    dagster_code_port: int | None = Field(
        None, description="gRPC port of the shared Dagster code server; unset = dagster_port + 1"
    )
    dagster_code_nice: int = Field(
        10, ge=0, le=19, description="CPU niceness of the local stack's Dagster code server and "
        "of the runs it launches (Spark batch): batch work yields the cores to the stream and "
        "the API (0 = normal priority)",
    )
    dagster_home: Path | None = Field(None, description="DAGSTER_HOME; unset = <home>/dagster-home")
    dagster_code_watch_s: float = Field(
        10.0, gt=0, description="How often the webserver and the daemon ask the code server "
        "whether it was replaced (Dagster's default 1 s: two gRPC calls a second, ≈ 1 % of a "
        "core on an idle stack); a restarted code server is picked up within this long",
    )
    session_gap_minutes: float = Field(30.0, description="Inactivity gap that ends a session")
    batch_change_overlap_s: float = Field(
        300.0, description="Re-examine days of events committed this long before the last run"
    )
    batch_snapshot_timeout_s: float = Field(
        120.0, description="Longest wait for writers in flight when a batch asset takes its mark"
    )
    batch_schedule_cron: str = "15 0 * * *"
    stream_checks_interval_s: int = Field(
        600, description="How often stream_checks_sensor evaluates the stream's SLO and freshness"
    )
    batch_live_interval_s: int = Field(
        30, description="How often live_batch_sensor (on during the demo) looks for new data"
    )
    batch_live_min_gap_s: float = Field(
        60.0, description="Least time between two daily_batch runs live_batch_sensor requests"
    )
    popular_items_limit: int = Field(500, description="Items kept per day in popular_items")
    idempotency_check_max_days: int = 3
    slo_window_minutes: float = Field(60.0, description="Recent stored events the SLO check reads")
    slo_check_max_events: int = Field(
        100_000, ge=1, description="The SLO check's sample: the newest N events of its window "
        "(every event of 60 min at 5,000 events/s took PostgreSQL ~13 s per 2.5 M rows)",
    )
    slo_e2e_p95_ms: float = 5000.0
    slo_stage_p50_ms: float = 1500.0
    slo_stage_p95_ms: float = 3000.0
    stream_stale_seconds: float = Field(120.0, description="No commit/heartbeat this long = stale")
    dlq_poll_interval_s: int = 60
    stream_health_interval_s: int = 60
    dlq_top_reasons: int = 5

    # --- Slack / alerts ------------------------------------------------------------------------
    slack_token: str | None = None
    slack_channel: str = "#clickguard-alerts"
    slack_base_url: str | None = Field(None, description="Override of Slack's Web API base URL")
    dlq_warning_threshold: int = 1
    dlq_critical_threshold: int = 20
    alert_cooldown_minutes: float = 10.0

    # --- email for CRITICAL alerts (DLQ and stream); unset host = no email (logged) --------------
    smtp_host: str | None = Field(None, description="SMTP server for CRITICAL alert emails")
    smtp_port: int = 587
    smtp_user: str | None = Field(None, description="SMTP login; unset = no AUTH")
    smtp_password: str | None = None
    smtp_from: str = "clickguard@localhost"
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS")
    smtp_timeout_s: float = 10.0
    alert_email_to: str | None = Field(
        None, description="Comma-separated recipients of CRITICAL alert emails"
    )

    # --- proof (chaos, benches, SLO report, demo) ----------------------------------------------
    results_dir: Path = Field(
        REPO_ROOT / "docs" / "results", description="Where proof commands write JSON/MD/PNG"
    )
    chaos_rate: float = Field(2000.0, description="Steady producer load during chaos, events/s")
    chaos_warmup_s: float = 20.0
    chaos_fault_s: float = Field(15.0, description="How long a node stays down/paused")
    chaos_observe_s: float = Field(20.0, description="Load kept on after the fault ends")
    chaos_recover_timeout_s: float = 180.0
    chaos_sample_s: float = Field(0.5, description="Lag sampling interval")
    capacity_rates: list[int] = Field(
        default_factory=lambda: [2500, 5000, 7500, 10000, 12500, 15000, 20000]
    )
    capacity_step_s: float = 30.0
    capacity_max_p95_ms: float = Field(
        2000.0, description="A capacity step is sustainable only if e2e p95 stays under this"
    )
    demo_rate: float = Field(1000.0, description="Events/s `clickguard demo` streams")
    demo_status_s: float = 5.0

    # --- derived values ------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.home

    @property
    def pg_external(self) -> bool:
        """PostgreSQL is another server than the local stack's node (its host is not loopback):
        `clickguard stack up` then starts no PostgreSQL for the nodes that need one."""
        return not is_loopback(self.pg_host)

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_broker_ports)

    @property
    def kafka_broker_ports(self) -> list[int]:
        return [self.kafka_broker_port_base + i for i in range(self.kafka_nodes)]

    @property
    def kafka_controller_ports(self) -> list[int]:
        return [self.kafka_controller_port_base + i for i in range(self.kafka_nodes)]

    @property
    def schema_registry_url(self) -> str:
        """The registry's URL, with the basic-auth credentials in it when set (percent-encoded):
        one string carries them to every client, Spark's executors included. Print
        ``RegistryClient(url).url``, which drops them, never this."""
        url = self.registry_url or f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"
        if self.registry_username:
            from urllib.parse import quote

            scheme, rest = url.split("://", 1)
            user = quote(self.registry_username, safe="")
            password = quote(self.registry_password or "", safe="")
            url = f"{scheme}://{user}:{password}@{rest}"
        return url

    def pg_credentials(self, role: str) -> tuple[str, str]:
        """(user, password) of ``role`` in {"writer", "reader", "registry", "superuser"}."""
        return {
            "writer": (self.pg_writer_user, self.pg_writer_password),
            "reader": (self.pg_reader_user, self.pg_reader_password),
            "registry": (self.pg_registry_user, self.pg_registry_password),
            "superuser": (self.pg_superuser, self.pg_superuser_password),
        }[role]

    @property
    def pg_ssl_params(self) -> dict[str, str]:
        """libpq's ``sslmode`` and ``sslrootcert`` (pgjdbc and dagster-postgres take the same)."""
        return pg_ssl_params(self.pg_sslmode, self.pg_sslrootcert)

    @property
    def pg_jdbc_url(self) -> str:
        """Spark's JDBC URL of ``pg_db`` (:func:`pg_jdbc_url`); the role goes in
        :meth:`pg_jdbc_properties`."""
        return pg_jdbc_url(self.pg_host, self.pg_port, self.pg_db, self.pg_ssl_params)

    def pg_jdbc_properties(self, role: str) -> dict[str, str]:
        """Spark's JDBC properties for ``role`` (see :meth:`pg_credentials`)."""
        return pg_jdbc_properties(*self.pg_credentials(role))

    def pg_dsn(self, role: str = "writer", db: str | None = None) -> str:
        """libpq DSN for ``role`` (see :meth:`pg_credentials`), with the TLS settings."""
        user, password = self.pg_credentials(role)
        ssl = " ".join(f"{k}={v}" for k, v in self.pg_ssl_params.items())
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={db or self.pg_db} "
            f"user={user} password={password} {ssl}"
        )

    @property
    def jars_dir(self) -> Path:
        return self.cache_dir / "jars"

    @property
    def checkpoint_dir(self) -> Path:
        return self.stream_checkpoint_dir or self.home / "streaming" / "checkpoint"


# Passwords whose default is printed in this repository: fine on 127.0.0.1, not on a network
SHIPPED_SECRETS = (
    "pg_superuser_password", "pg_writer_password", "pg_reader_password", "pg_registry_password",
)


class ExposedDefaultsError(RuntimeError):
    """A service asked to listen beyond loopback while a shipped default password is in use."""


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and ``localhost``; ``0.0.0.0``/``::`` (every interface) are not."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it resolves beyond this machine


def refuse_exposed_defaults(settings: Settings, service: str, host: str) -> None:
    """Raise :class:`ExposedDefaultsError` if ``service`` would bind ``host`` beyond loopback
    while a password still has the default printed in this repository (anyone who reads the
    repo could then reach the data behind it)."""
    if is_loopback(host):
        return
    fields = Settings.model_fields
    defaults = [n for n in SHIPPED_SECRETS if getattr(settings, n) == fields[n].default]
    if defaults:
        env = ", ".join(env_name(n) for n in defaults)
        raise ExposedDefaultsError(
            f"{service} refuses to listen on {host}: the default password is still in use for "
            f"{', '.join(defaults)}. Set {env}, or bind 127.0.0.1."
        )


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()


def settings_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (say ``os.environ``) with every setting's ``CLICKGUARD_*`` variable set to its
    value in ``settings``, so a child process's :func:`get_settings` sees exactly these
    settings. A setting that is None (the default of each optional one) is left unset, never
    inherited from ``base``; variables that name no setting are kept."""
    names = {env_name(n) for n in Settings.model_fields}
    env = {k: v for k, v in (base or {}).items() if k not in names}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[env_name(name)] = env_value(value)
    return env


def env_example() -> str:
    """Text of ``.env.example``: every field, its description and default (regenerate with
    ``clickguard config --env-example > .env.example`` after adding a field)."""
    lines = [
        "# Clickstream Guardian configuration. Copy to .env (or export) to override a default.",
        "# Every variable is a field of clickguard/settings.py (prefix CLICKGUARD_).",
        "",
    ]
    for name, f in Settings.model_fields.items():
        default = f.default_factory() if f.default_factory else f.default  # type: ignore[call-arg]
        shown = "" if default is None else env_value(default)
        if isinstance(default, Path):
            shown = shown.replace(str(REPO_ROOT), "<repo>")
        if f.description:
            lines.append(f"# {f.description}")
        lines.append(f"# {env_name(name)}={shown}")
    return "\n".join(lines) + "\n"
