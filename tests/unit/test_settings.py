"""One settings module: every field is documented in .env.example and read from the env."""

from __future__ import annotations

import os

import pytest

from clickguard.settings import (
    REPO_ROOT,
    SHIPPED_SECRETS,
    ExposedDefaultsError,
    Settings,
    refuse_exposed_defaults,
)


def test_every_setting_is_documented_in_env_example() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"CLICKGUARD_{n.upper()}=" not in text]
    assert missing == []


def test_environment_overrides_and_derived_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKGUARD_KAFKA_BROKER_PORT_BASE", "30000")
    monkeypatch.setenv("CLICKGUARD_PG_PORT", "30432")
    s = Settings(_env_file=None)
    assert s.bootstrap_servers == "127.0.0.1:30000,127.0.0.1:30001,127.0.0.1:30002"
    assert "port=30432" in s.pg_dsn("reader")
    assert s.pg_dsn("writer").endswith("user=clickguard_writer password=clickguard-writer "
                                       "sslmode=prefer")


def test_external_services_are_configuration_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKGUARD_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("CLICKGUARD_REGISTRY_URL", "http://registry.internal:8081")
    s = Settings(_env_file=None)
    assert s.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert s.schema_registry_url == "http://registry.internal:8081"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_binds_with_default_passwords(host: str) -> None:
    refuse_exposed_defaults(Settings(_env_file=None), "api", host)  # no error


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.example.internal"])
def test_exposed_bind_with_a_default_password_is_refused(host: str) -> None:
    s = Settings(_env_file=None, pg_writer_password="s3cret", pg_reader_password="s3cret2")
    with pytest.raises(ExposedDefaultsError) as err:
        refuse_exposed_defaults(s, "api", host)
    msg = str(err.value)
    # names what is still default, and only that, and how to fix it
    assert f"api refuses to listen on {host}" in msg
    assert "CLICKGUARD_PG_SUPERUSER_PASSWORD" in msg and "CLICKGUARD_PG_REGISTRY_PASSWORD" in msg
    assert "WRITER" not in msg and "READER" not in msg


def test_exposed_bind_with_every_password_set_is_allowed() -> None:
    s = Settings(_env_file=None, **{n: f"not-{n}" for n in SHIPPED_SECRETS})
    refuse_exposed_defaults(s, "dagster-webserver", "0.0.0.0")  # no error


def test_api_node_refuses_to_start_exposed() -> None:
    """The real entry point (`python -m api.serve`) exits with the message, before binding."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKGUARD_")}
    env.update(CLICKGUARD_API_HOST="0.0.0.0", CLICKGUARD_API_PORT="1")  # port 1: never bound
    proc = subprocess.run([sys.executable, "-m", "api.serve"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "api refuses to listen on 0.0.0.0" in proc.stderr
