"""One settings module: every field is documented in .env.example and read from the env."""

from __future__ import annotations

import pytest

from clickguard.settings import REPO_ROOT, Settings


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
    assert s.pg_url("writer").endswith(":30432/clickguard")


def test_external_services_are_configuration_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKGUARD_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("CLICKGUARD_REGISTRY_URL", "http://registry.internal:8081")
    s = Settings(_env_file=None)
    assert s.bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert s.schema_registry_url == "http://registry.internal:8081"
