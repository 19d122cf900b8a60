"""Every resource of the code location, and the one function that configures them.

Assets, checks, sensors and ops receive their configuration as these resources, never from
``get_settings()``. ``build_resources`` fills each field from the setting of the same meaning
(``clickguard.settings``: its defaults, ``.env`` and the ``CLICKGUARD_*`` variables); given the
environment, a string or integer field whose ``CLICKGUARD_*`` variable is set becomes
``dg.EnvVar`` instead: resolved when a run starts, so secrets never land in run config or the UI.
Dagster resolves ``EnvVar`` for ``str`` and ``int`` fields only; floats and flags arrive as the
values ``Settings`` parsed from the same variables.
"""

from __future__ import annotations

import gc
import importlib
import smtplib
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from confluent_kafka import Producer
from dagster_pyspark import LazyPySparkResource
from dagster_slack import SlackResource
from pydantic import PrivateAttr
from slack_sdk import WebClient

from clickguard import kafka as kafka_helpers
from clickguard.db import partitions
from clickguard.settings import (
    Settings,
    env_name,
    pg_jdbc_properties,
    pg_jdbc_url,
    pg_ssl_params,
)
from clickguard.spark import require_connect_server, spark_conf, sql_session_conf


class SparkResource(LazyPySparkResource):
    """dagster-pyspark's lazy session (no JVM for runs that need none) that fails at once, with
    what to do, when its Spark Connect server is down instead of hanging in the client's
    retries."""

    @property
    def remote(self) -> str | None:
        """The Spark Connect server's URL, None for a local Spark in the run's process."""
        remote = self.spark_config.get("spark.remote")
        return str(remote) if remote else None

    def _init_session(self) -> None:
        if self.remote and self._spark_session is None:
            require_connect_server(self.remote)
        super()._init_session()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """End the run's Spark Connect session on the server. dagster-pyspark never stops its
        session: a local Spark ends with the run's process, but the Connect server kept every
        finished run's session (its state, its cached ML objects) until its idle timeout, one a
        minute while the live sensor launches runs. A failure here only logs: the run's work
        is done."""
        session = self._spark_session
        if session is None or not self.remote:
            return
        try:
            session.stop()
        except Exception as exc:  # noqa: BLE001 - the server drops it at its timeout anyway
            if context.log is not None:
                context.log.warning(f"could not end the Spark Connect session: {exc!r}")


class PostgresResource(dg.ConfigurableResource):
    """The application database as the writer role (psycopg for SQL, JDBC URL for Spark)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None  # PEM file of the server's CA; None = the driver's default

    @property
    def ssl_params(self) -> dict[str, str]:
        """libpq's TLS keywords; pgjdbc takes the same names and values."""
        return pg_ssl_params(self.sslmode, self.sslrootcert)

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        with psycopg.connect(
            psycopg.conninfo.make_conninfo(**self.ssl_params),
            host=self.host, port=self.port, dbname=self.dbname, user=self.user,
            password=self.password, connect_timeout=5, autocommit=autocommit,
        ) as conn:
            yield conn

    @property
    def jdbc_url(self) -> str:
        """Spark's JDBC URL of this database (the core's :func:`pg_jdbc_url`, which the Connect
        server's warm-up also uses)."""
        return pg_jdbc_url(self.host, self.port, self.dbname, self.ssl_params)

    @property
    def jdbc_properties(self) -> dict[str, str]:
        return pg_jdbc_properties(self.user, self.password)


class KafkaResource(dg.ConfigurableResource):
    """Bounded admin/metadata calls and a durable producer for the platform's cluster."""

    bootstrap_servers: str
    topic_raw: str
    topic_dlq: str
    timeout_s: float = 5.0
    # a managed cluster's TLS/SASL (clickguard.kafka.client_security reads these names)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: str | None = None

    def end_offsets(self, topic: str) -> dict[int, int]:
        """High watermarks per partition (never consumes); {} when the topic is unknown."""
        return kafka_helpers.end_offsets(self, topic, timeout=self.timeout_s)

    def producer(self, **overrides: object) -> Producer:
        return Producer(kafka_helpers.producer_config(self, **overrides))


class BatchResource(dg.ConfigurableResource):
    """How the batch assets cut days and sessions; their checks recompute with the same values."""

    session_gap_minutes: float
    batch_change_overlap_s: float
    batch_snapshot_timeout_s: float
    popular_items_limit: int
    idempotency_check_max_days: int
    batch_live_min_gap_s: float


class ExpectationsResource(dg.ConfigurableResource):
    """Great Expectations for the data-quality checks, imported in a background thread from the
    run's start.

    Importing GX (and pandas) is 2.5-4 s of Python in every run that validates data. A run starts
    with its asset step, whose Spark and PostgreSQL work leaves the run's own process idle; the
    import happens then. On a 2-core machine that is still CPU taken from Spark: measured, the
    asset step got ~1 s slower and the checks ~2 s faster
    (docs/results/dagster-connect/gx-copy-2026-12-03). A check's ``import great_expectations``
    waits on Python's module lock until this import is done; ``wait`` does it explicitly. After
    the import the interpreter's objects are frozen (``gc.freeze``): GX's thousands of
    import-time objects live as long as the run, and frozen, no later collection walks them, nor
    the interpreter's exit (1.3-1.7 s -> 0.1 s after a run of daily_sessions; reference counting
    still frees frozen objects, only cycles among them are kept).
    """

    _loading: threading.Thread | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._loading = threading.Thread(target=_import_expectations, name="gx-import",
                                         daemon=True)
        self._loading.start()

    def wait(self) -> None:
        if self._loading is not None:
            self._loading.join()


def _import_expectations() -> None:
    for module in ("pandas", "great_expectations", "great_expectations.expectations"):
        importlib.import_module(module)
    gc.freeze()


class RetentionResource(dg.ConfigurableResource):
    """How many days of events, DLQ records and ledger rows are kept, and how many days ahead
    the events' partitions exist."""

    events_retention_days: int
    dlq_retention_days: int
    ledger_retention_days: int
    events_partitions_ahead_days: int

    def retention(self) -> partitions.Retention:
        return partitions.Retention(
            events_days=self.events_retention_days, dlq_days=self.dlq_retention_days,
            ledger_days=self.ledger_retention_days,
        )


class SloResource(dg.ConfigurableResource):
    """The stream's latency targets, the window they are judged over, and staleness."""

    slo_window_minutes: float
    slo_check_max_events: int
    slo_e2e_p95_ms: float
    slo_stage_p50_ms: float
    slo_stage_p95_ms: float
    stream_stale_seconds: float
    batch_snapshot_timeout_s: float


class AlertPolicyResource(dg.ConfigurableResource):
    """When the DLQ and stream-health sensors alert, and what their messages point to."""

    dlq_warning_threshold: int
    dlq_critical_threshold: int
    dlq_poll_interval_s: int
    dlq_top_reasons: int
    alert_cooldown_minutes: float
    stream_health_interval_s: int
    stream_stale_seconds: float
    dagster_url: str
    stream_home: str  # the supervisor's status file lives here


class SlackAlertResource(SlackResource):
    """dagster-slack's ``SlackResource`` plus a channel and a Web API base URL override.

    An empty token means "no Slack": alerts then go to the log and the alert history only.
    """

    token: str = ""
    channel: str = "#clickguard-alerts"
    base_url: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def get_client(self) -> WebClient:
        if self.base_url:
            return WebClient(token=self.token, base_url=self.base_url, timeout=10)
        return WebClient(token=self.token, timeout=10)


class EmailAlertResource(dg.ConfigurableResource):
    """SMTP delivery of CRITICAL alerts, as the original emailed on CRITICAL.

    An empty host (or no recipient) means "no email": the outbox then logs that it was skipped.
    """

    host: str = ""
    port: int = 587
    user: str = ""
    password: str = ""
    from_addr: str = "clickguard@localhost"
    to: str = ""  # comma-separated recipients
    starttls: bool = True
    timeout_s: float = 10.0

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.to.split(",") if a.strip()]

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.recipients)

    def send(self, subject: str, body: str) -> None:
        """One plain-text email; raises smtplib.SMTPException / OSError on failure."""
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, self.from_addr, ", ".join(
            self.recipients
        )
        msg.set_content(body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)


class _Fields:
    """Resource field values from ``settings``; ``dg.EnvVar`` where ``env`` sets the variable."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None) -> None:
        self.settings, self.env = settings, env or {}

    def __call__(self, field: str, value: Any = None) -> Any:
        """The value of setting ``field`` (or ``value`` when given: derived or defaulted)."""
        value = getattr(self.settings, field) if value is None else value
        if isinstance(value, Path):
            value = str(value)
        name = env_name(field)
        if not self.env.get(name) or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return dg.EnvVar.int(name)
        return dg.EnvVar(name) if isinstance(value, str) else value

    def of(self, cls: type[dg.ConfigurableResource]) -> dict[str, Any]:
        """Every field of ``cls`` named after a setting (the resources above are)."""
        return {f: self(f) for f in cls.model_fields if f in Settings.model_fields}


def build_resources(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resource dict of the Definitions (``env=os.environ``) and of tests (plain values).

    Plain values suit code that calls a resource's methods outside a run (tests, the CLI): a
    ``dg.EnvVar`` field is only resolved when Dagster builds the resource for a run or sensor.
    """
    field = _Fields(settings, env)
    s = settings
    if s.spark_remote:  # the long-running Spark Connect server: no JVM per run
        conf = {"spark.remote": s.spark_remote, **sql_session_conf(s)}
    else:
        conf = spark_conf(s, "clickguard-dagster", **{"spark.ui.showConsoleProgress": "false"})
    return {
        # lazy: check-only runs and sensors never start a JVM
        "spark": SparkResource(spark_config=conf),
        "postgres": PostgresResource(
            host=field("pg_host"), port=field("pg_port"), dbname=field("pg_db"),
            user=field("pg_writer_user"), password=field("pg_writer_password"),
            sslmode=field("pg_sslmode"),
            sslrootcert=field("pg_sslrootcert"),
        ),
        "kafka": KafkaResource(
            bootstrap_servers=field("kafka_bootstrap", s.bootstrap_servers),
            topic_raw=field("topic_raw"), topic_dlq=field("topic_dlq"),
            kafka_security_protocol=field("kafka_security_protocol"),
            kafka_sasl_mechanism=field("kafka_sasl_mechanism"),
            kafka_sasl_username=field("kafka_sasl_username"),
            kafka_sasl_password=field("kafka_sasl_password"),
            kafka_ssl_ca_location=field("kafka_ssl_ca_location"),
        ),
        "batch": BatchResource(**field.of(BatchResource)),
        "expectations": ExpectationsResource(),
        "retention": RetentionResource(**field.of(RetentionResource)),
        "slo": SloResource(**field.of(SloResource)),
        "alerts": AlertPolicyResource(
            **field.of(AlertPolicyResource),
            dagster_url=f"http://{s.dagster_host}:{s.dagster_port}",
            stream_home=str(s.home / "streaming"),
        ),
        "slack": SlackAlertResource(
            token=field("slack_token", s.slack_token or ""), channel=field("slack_channel"),
            base_url=field("slack_base_url", s.slack_base_url or ""),
        ),
        "email": EmailAlertResource(
            host=field("smtp_host", s.smtp_host or ""), port=field("smtp_port"),
            user=field("smtp_user", s.smtp_user or ""),
            password=field("smtp_password", s.smtp_password or ""),
            from_addr=field("smtp_from"), to=field("alert_email_to", s.alert_email_to or ""),
            starttls=field("smtp_starttls"), timeout_s=field("smtp_timeout_s"),
        ),
    }
