"""The running stack really is what issue 2 promises: 3 brokers, topic configs, roles."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka.admin import ConfigResource

from clickguard import db, procs
from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings
from clickguard_stack.manager import INFRA, Stack


def test_three_brokers_registered(stack: Stack, settings: Settings) -> None:
    md = kafka_helpers.admin(settings).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    assert {b.port for b in md.brokers.values()} == set(settings.kafka_broker_ports)


def test_topics_have_the_specified_configs(stack: Stack, settings: Settings) -> None:
    client = kafka_helpers.admin(settings)
    md = client.list_topics(timeout=10)
    for spec in kafka_helpers.topic_specs(settings):
        topic = md.topics[spec.name]
        assert len(topic.partitions) == spec.partitions
        for p in topic.partitions.values():
            assert len(p.replicas) == 3
            assert len(p.isrs) == 3
        res = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
        configs = next(iter(client.describe_configs([res]).values())).result()
        assert configs["min.insync.replicas"].value == "2"
        assert configs["unclean.leader.election.enable"].value == "false"
        expected_ts = "LogAppendTime" if spec.name == settings.topic_raw else "CreateTime"
        assert configs["message.timestamp.type"].value == expected_ts
    assert md.topics[settings.topic_raw].partitions.__len__() == 6


def test_topic_creation_and_migrations_are_idempotent(stack: Stack, settings: Settings) -> None:
    assert kafka_helpers.ensure_topics(settings) == []
    db.bootstrap(settings)
    assert db.migrate(settings) == []


def test_api_role_reads_but_cannot_write(stack: Stack, settings: Settings) -> None:
    """The reader sees what the writer committed, and can change nothing."""
    with db.connect(settings, "writer", autocommit=True) as writer:
        writer.execute(
            "insert into stream_heartbeat(component, beat_at, status) "
            "values ('reader-test', now(), 'committed') "
            "on conflict (component) do update set status = excluded.status"
        )
        try:
            with db.connect(settings, "reader") as conn:
                seen = conn.execute(
                    "select status from stream_heartbeat where component = 'reader-test'"
                ).fetchone()
                assert seen == ("committed",)
                conn.rollback()
                with pytest.raises((psycopg.errors.ReadOnlySqlTransaction,
                                    psycopg.errors.InsufficientPrivilege)):
                    conn.execute(
                        "insert into stream_heartbeat(component, beat_at, status) "
                        "values ('reader-insert', now(), 'x')"
                    )
                conn.rollback()
                # even with read-only switched off for the session, the role has no write
                # privilege
                conn.execute("set default_transaction_read_only = off")
                conn.commit()
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("delete from stream_heartbeat")
        finally:
            writer.execute("delete from stream_heartbeat where component = 'reader-test'")


def test_writer_role_writes(stack: Stack, settings: Settings) -> None:
    """The stream's role inserts, updates and deletes rows (inside one transaction, rolled
    back: nothing is left behind)."""
    status = "select status from stream_heartbeat where component = 'writer-test'"
    with db.connect(settings, "writer") as conn:
        conn.execute(
            "insert into stream_heartbeat(component, beat_at, status) "
            "values ('writer-test', now(), 'inserted') "
            "on conflict (component) do update set status = excluded.status"
        )
        assert conn.execute(status).fetchone() == ("inserted",)
        conn.execute(
            "update stream_heartbeat set status = 'updated' where component = 'writer-test'"
        )
        assert conn.execute(status).fetchone() == ("updated",)
        conn.execute("delete from stream_heartbeat where component = 'writer-test'")
        assert conn.execute(status).fetchone() is None
        conn.rollback()


def test_status_reports_every_infra_node_healthy(stack: Stack) -> None:
    states = {r.name: r.state for r in stack.status() if r.name in INFRA}
    assert states == dict.fromkeys(INFRA, "healthy")


def test_registry_keeps_schema_ids_across_restart(stack: Stack, settings: Settings) -> None:
    from clickguard.contract import RegistryClient, register_contract

    client = RegistryClient(settings.schema_registry_url)
    schema_id = register_contract(client, settings.topic_raw)
    stack.control("stop", "registry")
    assert stack.node("registry").status().state == "down"
    stack.control("start", "registry")
    fresh = RegistryClient(settings.schema_registry_url)
    assert fresh.schema_by_id(schema_id) is not None
    assert register_contract(fresh, settings.topic_raw) == schema_id
    before = stack.node("registry").pid()
    assert stack.control("restart", "registry").startswith("registry restarted")
    after = stack.node("registry").pid()
    assert after is not None and after != before
    assert RegistryClient(settings.schema_registry_url).schema_by_id(schema_id) is not None


def test_registry_has_its_own_role(stack: Stack, settings: Settings) -> None:
    """The schema registry connects as its own role, which owns the registry's database and
    its tables, and can neither read the platform's data nor act as a superuser."""
    with db.connect(settings, "superuser", "postgres", autocommit=True) as conn:
        users = {u for (u,) in conn.execute(
            "select distinct usename from pg_stat_activity where datname = %s", (db.REGISTRY_DB,)
        ).fetchall()}
        owners = {o for (o,) in conn.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = %s",
            (db.REGISTRY_DB,),
        ).fetchall()}
        superuser = db.one(conn, "select rolsuper from pg_roles where rolname = %s",
                           (settings.pg_registry_user,))[0]
    assert users == {settings.pg_registry_user}  # the registry's pool, nobody else's
    assert owners == {settings.pg_registry_user}
    assert superuser is False
    with db.connect(settings, "registry", db.REGISTRY_DB) as conn:
        foreign = conn.execute(
            "select count(*) from pg_tables where schemaname = 'public' and tableowner <> %s",
            (settings.pg_registry_user,),
        ).fetchone()
        assert foreign == (0,)
    with db.connect(settings, "registry") as conn, pytest.raises(
        psycopg.errors.InsufficientPrivilege
    ):
        conn.execute("select count(*) from events")



def test_up_of_a_killed_broker_returns_once_it_has_caught_up(
    stack: Stack, settings: Settings
) -> None:
    """`clickguard stack up kafka-2` after a SIGKILL: the other two brokers are registered all
    along, so `up` must wait for this one by its id, then for every ISR to be full again (it
    returned in ~2 s with kafka-2 still starting before)."""
    stack.control("kill", "kafka-2")
    assert procs.wait_until(  # fenced: the controller's session timeout (2 s) has passed
        lambda: 2 not in kafka_helpers.cluster_health(settings, topics=[]).broker_ids, 30
    )
    stack.up(["kafka-2"], timeout=120)
    health = kafka_helpers.cluster_health(settings)
    assert 2 in health.broker_ids
    assert health.ready(settings.kafka_nodes), health
    assert stack.node("kafka-2").status().healthy
