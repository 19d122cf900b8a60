"""One settings module: every field is documented in .env.example and read from the env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clickguard.settings import (
    REPO_ROOT,
    SHIPPED_SECRETS,
    ExposedDefaultsError,
    Settings,
    refuse_exposed_defaults,
    settings_env,
)


def test_every_setting_is_documented_in_env_example() -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"CLICKGUARD_{n.upper()}=" not in text]
    assert missing == []


def test_settings_become_the_variables_a_child_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """settings_env: Settings -> CLICKGUARD_* variables -> the same Settings in a process that
    reads them (ports, secrets, paths, lists, flags, floats); the shell's variable of a setting
    that is None here is dropped, variables that name no setting stay."""
    s = Settings(
        _env_file=None, home=tmp_path / "run", pg_port=6543, spark_connect_port=25002,
        pg_reader_password="s3cret with spaces, = and %", kafka_sasl_password='p"w\'d',
        pg_sslmode="verify-full", pg_sslrootcert=tmp_path / "root.crt",
        api_cors_origins=["http://a.example", "http://b.example:8080"], capacity_rates=[1, 2],
        dashboard_sched_idle=not Settings.model_fields["dashboard_sched_idle"].default,
        spike_ewma_alpha=0.15,
    )
    shell = {"PATH": "/usr/bin", "CLICKGUARD_SPARK_REMOTE": "sc://elsewhere:1",
             "CLICKGUARD_PG_PORT": "1", "CLICKGUARD_NOT_A_SETTING": "kept"}
    env = settings_env(s, shell)
    assert env["CLICKGUARD_PG_PORT"] == "6543" and env["PATH"] == "/usr/bin"
    assert env["CLICKGUARD_NOT_A_SETTING"] == "kept"
    assert "CLICKGUARD_SPARK_REMOTE" not in env  # None here: not the shell's value
    for name in list(os.environ):
        if name.startswith("CLICKGUARD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    back = Settings(_env_file=None)
    assert back == s
    assert (back.pg_port, back.pg_reader_password, back.api_cors_origins) == (
        6543, "s3cret with spaces, = and %", ["http://a.example", "http://b.example:8080"])


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
