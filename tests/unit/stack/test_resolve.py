"""Which nodes `clickguard stack up NODE...` starts: the named ones and what they need."""

from __future__ import annotations

from pathlib import Path

from clickguard.settings import Settings
from clickguard_stack.manager import Stack


def _stack(tmp_path: Path, **values: object) -> Stack:
    return Stack(Settings(_env_file=None, home=tmp_path, **values), echo=lambda _: None)


def test_a_named_node_comes_with_the_nodes_it_needs(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    assert stack.resolve(["registry"]) == ["postgres", "registry"]
    assert stack.resolve(["dashboard"]) == ["postgres", "api", "dashboard"]
    assert stack.resolve(["dagster-daemon"]) == ["postgres", "dagster-code", "dagster-daemon"]
    assert stack.resolve(["streaming"]) == [
        "postgres", "kafka-1", "kafka-2", "kafka-3", "registry", "streaming"]
    assert stack.resolve(["kafka-2"]) == ["kafka-2"]  # a broker needs no other node


def test_services_configured_as_external_are_not_started(tmp_path: Path) -> None:
    stack = _stack(tmp_path, kafka_bootstrap="broker.example:9093", pg_host="db.example",
                   registry_url="http://registry.example/apis/ccompat/v7")
    assert stack.resolve(["streaming"]) == ["streaming"]
    assert stack.resolve(["dashboard"]) == ["api", "dashboard"]


def test_a_loopback_postgres_host_is_the_local_node(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        assert _stack(tmp_path, pg_host=host).resolve(["registry"]) == ["postgres", "registry"]
    assert _stack(tmp_path, pg_host="10.0.0.5").resolve(["registry"]) == ["registry"]
