"""Every resource of the code location, configured from clickguard.settings and ``dg.EnvVar``.

Secrets come through ``dg.EnvVar`` (resolved at run time, never stored in run config) when the
variable is set; otherwise the settings default is used, so a fresh checkout works unchanged.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import dagster as dg
import psycopg
from confluent_kafka import Producer
from dagster_pyspark import LazyPySparkResource
from dagster_slack import SlackResource
from slack_sdk import WebClient

from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings, get_settings
from clickguard.spark import spark_conf


def _secret(env_name: str, fallback: str) -> Any:
    """``dg.EnvVar(env_name)`` when the variable is set, else the settings value."""
    return dg.EnvVar(env_name) if os.environ.get(env_name) else fallback


class PostgresResource(dg.ConfigurableResource):
    """The application database as the writer role (psycopg for SQL, JDBC URL for Spark)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str

    @contextmanager
    def connect(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        with psycopg.connect(
            host=self.host, port=self.port, dbname=self.dbname, user=self.user,
            password=self.password, connect_timeout=5, autocommit=autocommit,
        ) as conn:
            yield conn

    @property
    def jdbc_url(self) -> str:
        # stringtype=unspecified lets PostgreSQL cast Spark's strings to the column types
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}?stringtype=unspecified"

    @property
    def jdbc_properties(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password, "driver": "org.postgresql.Driver"}


class KafkaResource(dg.ConfigurableResource):
    """Bounded admin/metadata calls and a durable producer for the platform's cluster."""

    bootstrap_servers: str
    timeout_s: float = 5.0

    def _settings(self) -> Settings:
        return get_settings().model_copy(update={"kafka_bootstrap": self.bootstrap_servers})

    def end_offsets(self, topic: str) -> dict[int, int]:
        """High watermarks per partition (never consumes); {} when the topic is unknown."""
        return kafka_helpers.end_offsets(self._settings(), topic, timeout=self.timeout_s)

    def producer(self, **overrides: object) -> Producer:
        return Producer(kafka_helpers.producer_config(self._settings(), **overrides))


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


def postgres_resource(settings: Settings) -> PostgresResource:
    return PostgresResource(
        host=settings.pg_host, port=settings.pg_port, dbname=settings.pg_db,
        user=settings.pg_writer_user,
        password=_secret("CLICKGUARD_PG_WRITER_PASSWORD", settings.pg_writer_password),
    )


def slack_resource(settings: Settings) -> SlackAlertResource:
    return SlackAlertResource(
        token=_secret("CLICKGUARD_SLACK_TOKEN", settings.slack_token or ""),
        channel=settings.slack_channel,
        base_url=settings.slack_base_url or "",
    )


def email_resource(settings: Settings) -> EmailAlertResource:
    return EmailAlertResource(
        host=settings.smtp_host or "",
        port=settings.smtp_port,
        user=settings.smtp_user or "",
        password=_secret("CLICKGUARD_SMTP_PASSWORD", settings.smtp_password or ""),
        from_addr=settings.smtp_from,
        to=settings.alert_email_to or "",
        starttls=settings.smtp_starttls,
        timeout_s=settings.smtp_timeout_s,
    )


def spark_resource(settings: Settings) -> LazyPySparkResource:
    """dagster-pyspark session (lazy: check-only runs and sensors never start a JVM)."""
    conf = spark_conf(settings, "clickguard-dagster", **{"spark.ui.showConsoleProgress": "false"})
    return LazyPySparkResource(spark_config=conf)


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resource dict of the Definitions (and of tests, with their own settings)."""
    settings = settings or get_settings()
    return {
        "spark": spark_resource(settings),
        "postgres": postgres_resource(settings),
        "kafka": KafkaResource(bootstrap_servers=settings.bootstrap_servers),
        "slack": slack_resource(settings),
        "email": email_resource(settings),
    }
