"""infra/docker-compose.yml must describe the same topology as the settings module."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from clickguard.settings import REPO_ROOT, Settings
from clickguard_stack.nodes import KAFKA_CLEANER_BUFFER_BYTES

COMPOSE = REPO_ROOT / "infra" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(Path(COMPOSE).read_text())


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return Settings(_env_file=None)


def host_port(service: dict, container_port: int | None = None) -> int:
    """Host side of the service's single 127.0.0.1 port mapping."""
    (mapping,) = service["ports"]
    ip, host, container = mapping.split(":")
    assert ip == "127.0.0.1", "every published port is bound to loopback"
    if container_port is not None:
        assert int(container) == container_port
    return int(host)


def test_services_cover_the_stack_nodes(compose: dict) -> None:
    from clickguard_stack.manager import build_nodes

    nodes = set(build_nodes(Settings(_env_file=None)))
    assert nodes <= set(compose["services"])


def test_kafka_ports_and_cluster_defaults(compose: dict, defaults: Settings) -> None:
    services = compose["services"]
    ports = [host_port(services[f"kafka-{i}"]) for i in range(1, defaults.kafka_nodes + 1)]
    assert ports == defaults.kafka_broker_ports
    for i in range(1, defaults.kafka_nodes + 1):
        env = services[f"kafka-{i}"]["environment"]
        assert env["KAFKA_NODE_ID"] == str(i)
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(defaults.topic_replication)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == str(defaults.topic_min_isr)
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        assert env["KAFKA_BROKER_SESSION_TIMEOUT_MS"] == str(defaults.kafka_session_timeout_ms)
        assert env["KAFKA_BROKER_HEARTBEAT_INTERVAL_MS"] == str(
            defaults.kafka_heartbeat_interval_ms
        )
        assert env["KAFKA_REPLICA_FETCH_WAIT_MAX_MS"] == str(defaults.kafka_replica_fetch_wait_ms)
        assert env["KAFKA_CONTROLLER_QUORUM_FETCH_TIMEOUT_MS"] == str(
            defaults.kafka_quorum_fetch_timeout_ms
        )
        assert env["KAFKA_CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS"] == str(
            defaults.kafka_quorum_election_timeout_ms
        )
        assert f"127.0.0.1:{ports[i - 1]}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_HEAP_OPTS"].endswith(f"-Xmx{defaults.kafka_heap}")
        # the heap above holds the cleaner's key map only if it is the stack's size, not 128 MiB
        assert env["KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE"] == str(KAFKA_CLEANER_BUFFER_BYTES)


def test_postgres_registry_api_dagster_ports(compose: dict, defaults: Settings) -> None:
    s = compose["services"]
    assert host_port(s["postgres"], 5432) == defaults.pg_port
    assert s["postgres"]["environment"]["POSTGRES_USER"] == defaults.pg_superuser
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD"] == defaults.pg_superuser_password
    assert host_port(s["registry"]) == defaults.registry_port
    assert host_port(s["api"]) == defaults.api_port
    assert host_port(s["dagster-webserver"]) == defaults.dagster_port


def test_registry_env_matches_local_node(compose: dict, defaults: Settings) -> None:
    """The registry container is configured like the local RegistryNode (PostgreSQL storage)."""
    from clickguard_stack.nodes import RegistryNode

    local = RegistryNode("registry", defaults).env()
    env = compose["services"]["registry"]["environment"]
    for key in ("APICURIO_STORAGE_KIND", "APICURIO_STORAGE_SQL_KIND",
                "APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED"):
        assert env[key] == local[key]
    assert env["APICURIO_DATASOURCE_URL"].endswith("/registry")


def test_app_env_names_are_settings_fields(compose: dict) -> None:
    """Every CLICKGUARD_* variable in the file names a real settings field (no typos)."""
    fields = {f"CLICKGUARD_{name.upper()}" for name in Settings.model_fields}
    seen = 0
    for name, service in compose["services"].items():
        for key in service.get("environment", {}) or {}:
            if key.startswith("CLICKGUARD_"):
                seen += 1
                assert key in fields, f"{name}: {key} is not a settings field"
    assert seen > 0
