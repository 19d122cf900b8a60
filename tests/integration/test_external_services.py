"""External services by configuration only (issue 11, item 5), as a managed offering runs them.

A Kafka broker that speaks SASL_SSL only (PLAIN and SCRAM-SHA-512) and a PostgreSQL that refuses
unencrypted connections are started here, on their own ports and folders, not by `clickguard
stack`, with certificates from a CA this test generates. `clickguard init`, the producer, the
streaming job (Spark's Kafka source, its DLQ producer, its PostgreSQL writes), the API and
Dagster's resources then reach them through ``CLICKGUARD_*`` variables alone. The schema registry
is the session stack's, reached by URL like any external registry.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clickguard import db, procs
from clickguard import kafka as kafka_helpers
from clickguard.jars import jar_dir
from clickguard.settings import REPO_ROOT, Settings, get_settings
from clickguard_stack.manager import Stack, log_excerpt
from clickguard_stack.nodes import KAFKA_CLEANER_BUFFER_BYTES, PostgresNode
from tests.integration.api.conftest import free_port

BIN = Path(sys.executable).parent
EVENTS = 3000
ADMIN_PLAIN = ("admin", "admin-secret")  # the broker's own (inter-broker) PLAIN user
ALICE_PLAIN = ("alice", "alice-secret")
CAROL_SCRAM = ("carol", "carol-scram-secret")


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path

    @property
    def keystore(self) -> Path:
        """Key and certificate in one PEM file: Kafka's PEM key store."""
        return self.cert.with_name("server-keystore.pem")


def make_pki(folder: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (RSA 2048, 1 day)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder().subject_name(name("clickguard test CA"))
        .issuer_name(name("clickguard test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "server.crt", folder / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pki.key.write_bytes(key_pem)
    pki.keystore.write_bytes(key_pem + pki.cert.read_bytes())
    for p in (folder, pki.ca, pki.cert):  # PostgreSQL's user reads the CA and the certificate
        p.chmod(0o755 if p.is_dir() else 0o644)
    return pki


def _jaas(module: str, extra: str = "") -> str:
    return f"org.apache.kafka.common.security.{module} required {extra};"


def start_secure_kafka(folder: Path, pki: Pki, cache: Settings) -> tuple[subprocess.Popen, int]:
    """A single KRaft node whose only client listener is SASL_SSL; returns (process, port)."""
    port, ctl = free_port(), free_port()
    props = {
        "process.roles": "broker,controller", "node.id": 1,
        "controller.quorum.voters": f"1@127.0.0.1:{ctl}",
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule",
            f'username="{ADMIN_PLAIN[0]}" password="{ADMIN_PLAIN[1]}" '
            f'user_{ADMIN_PLAIN[0]}="{ADMIN_PLAIN[1]}" user_{ALICE_PLAIN[0]}="{ALICE_PLAIN[1]}"'),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _jaas("scram.ScramLoginModule"),
        "ssl.keystore.type": "PEM", "ssl.keystore.location": pki.keystore,
        "ssl.truststore.type": "PEM", "ssl.truststore.location": pki.ca,
        "log.dirs": folder / "data", "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": 1, "offsets.topic.num.partitions": 3,
        "transaction.state.log.replication.factor": 1, "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0, "num.network.threads": 2, "num.io.threads": 2,
        "log.cleaner.dedupe.buffer.size": KAFKA_CLEANER_BUFFER_BYTES,
    }
    config = folder / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    java = ["java", f"-Xmx{cache.kafka_heap}", "-cp", f"{jar_dir(cache, 'kafka')}/*"]
    subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", "Zm9yLWV4dGVybmFsLXRlc3Q", "-c",
         str(config), "--add-scram", f"SCRAM-SHA-512=[name={CAROL_SCRAM[0]},"
         f"password={CAROL_SCRAM[1]}]"],
        check=True, capture_output=True, text=True,
    )
    log = (folder / "kafka.log").open("ab")
    proc = subprocess.Popen([*java, "kafka.Kafka", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port


def start_tls_only_postgres(folder: Path, pki: Pki, settings: Settings) -> PostgresNode:
    """A private PostgreSQL (initdb/pg_ctl) with ssl = on and no pg_hba entry without TLS."""
    node = PostgresNode("ext-postgres", settings.model_copy(update={"home": folder}))
    node.prepare()
    data = node.data_dir
    for src, dst in ((pki.cert, "server.crt"), (pki.key, "server.key")):
        target = data / dst
        target.write_bytes(src.read_bytes())
        target.chmod(0o600)
        node.own(target)  # the server refuses a key that others can read or it cannot
    with (data / "postgresql.conf").open("a") as f:
        f.write("ssl = on\n"
                "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 0.0.0.0/0 reject\n"
    )
    node.start()
    return node


def _env(base: dict[str, str]) -> dict[str, str]:
    """The process environment without the session stack's CLICKGUARD_* values, plus ``base``."""
    keep = ("CLICKGUARD_CACHE_DIR", "CLICKGUARD_PG_BIN_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKGUARD_") or k in keep}
    return env | base


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[dict[str, str]]:
    """The secure broker and PostgreSQL, and the CLICKGUARD_* variables that point at them."""
    root = tmp_path_factory.mktemp("external")
    pki = make_pki(root / "pki")
    pg_port = free_port()
    pg_settings = stack.settings.model_copy(update={
        "pg_port": pg_port, "pg_sslmode": "verify-full", "pg_sslrootcert": pki.ca})
    kafka_dir = root / "kafka"
    kafka_dir.mkdir()
    broker, kafka_port = start_secure_kafka(kafka_dir, pki, stack.settings)
    pg = None
    try:
        pg = start_tls_only_postgres(root / "pg", pki, pg_settings)
        env = {
            "CLICKGUARD_HOME": str(root / "home"),
            "CLICKGUARD_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "CLICKGUARD_KAFKA_NODES": "1",
            "CLICKGUARD_TOPIC_REPLICATION": "1",
            "CLICKGUARD_TOPIC_MIN_ISR": "1",
            "CLICKGUARD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CLICKGUARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CLICKGUARD_KAFKA_SASL_USERNAME": CAROL_SCRAM[0],
            "CLICKGUARD_KAFKA_SASL_PASSWORD": CAROL_SCRAM[1],
            "CLICKGUARD_KAFKA_SSL_CA_LOCATION": str(pki.ca),
            "CLICKGUARD_PG_HOST": "127.0.0.1",
            "CLICKGUARD_PG_PORT": str(pg_port),
            "CLICKGUARD_PG_SSLMODE": "verify-full",
            "CLICKGUARD_PG_SSLROOTCERT": str(pki.ca),
            "CLICKGUARD_REGISTRY_URL": stack.settings.schema_registry_url,
        }
        s = _settings(env)
        deadline = time.monotonic() + 120
        while True:  # the broker answers once TLS, SASL and the metadata quorum are up
            try:
                kafka_helpers.admin(s).list_topics(timeout=5)
                break
            except KafkaException as exc:
                if broker.poll() is not None or time.monotonic() > deadline:
                    state = "exited" if broker.poll() is not None else "still running"
                    said = "\n".join(log_excerpt(kafka_dir / "kafka.log"))
                    raise RuntimeError(
                        f"secure broker did not start ({state}); {kafka_dir}/kafka.log says:\n"
                        f"{said}") from exc
                time.sleep(1)
        yield env
    finally:
        if pg is not None:
            pg.stop()
        procs.terminate(broker.pid, 20)
        broker.wait(10)


def _settings(env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, **{k.removeprefix("CLICKGUARD_").lower(): v
                                       for k, v in env.items()})


def test_servers_refuse_what_the_settings_avoid(external: dict[str, str]) -> None:
    """The TLS-only PostgreSQL rejects a connection without TLS and one verified against no CA;
    the broker rejects a plaintext client and a wrong SASL password: so the successes below are
    the settings at work, not lenient servers."""
    s = _settings(external)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(s.model_copy(update={"pg_sslmode": "disable"}).pg_dsn("superuser",
                                                                              "postgres"))
    with pytest.raises(psycopg.OperationalError, match="root certificate file"):
        psycopg.connect(s.model_copy(update={"pg_sslrootcert": s.home / "none.pem"}).pg_dsn(
            "superuser", "postgres"))
    with psycopg.connect(s.pg_dsn("superuser", "postgres")) as c:
        row = c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)

    for wrong in ({"kafka_security_protocol": "PLAINTEXT"},
                  {"kafka_sasl_password": "not-the-password"}):
        bad = s.model_copy(update=wrong)
        errors: list[str] = []
        conf: dict[str, object] = {
            **kafka_helpers.client_config(bad, {"socket.timeout.ms": 3000, "log_level": 0}),
            "error_cb": lambda e, out=errors: out.append(str(e)),
        }
        client = AdminClient(conf)
        with pytest.raises(KafkaException):  # the metadata request times out
            client.list_topics(timeout=4)
        client.poll(1)  # serves error_cb
        if "kafka_sasl_password" in wrong:
            assert any("Authentication failed" in e for e in errors), errors
    # PLAIN and SCRAM both authenticate
    for mechanism, (user, password) in (("PLAIN", ALICE_PLAIN), ("SCRAM-SHA-512", CAROL_SCRAM)):
        ok = s.model_copy(update={"kafka_sasl_mechanism": mechanism,
                                  "kafka_sasl_username": user, "kafka_sasl_password": password})
        assert kafka_helpers.admin(ok).list_topics(timeout=10).brokers


def test_init_produce_stream_api_and_dagster_on_external_services(
    external: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events end to end through the secure services, configured by CLICKGUARD_* only."""
    env = _env(external)
    s = _settings(external)
    init = subprocess.run([str(BIN / "clickguard"), "init"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=REPO_ROOT)
    assert init.returncode == 0, init.stderr[-3000:]
    assert "topics created" in init.stdout and s.topic_raw in init.stdout, init.stdout

    produce = subprocess.run(
        [str(BIN / "clickguard"), "produce", "--count", str(EVENTS), "--rate", "1000",
         "--duplicates", "0", "--late", "0", "--malformed", "0.05", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )
    assert produce.returncode == 0, produce.stderr[-3000:]
    assert sum(kafka_helpers.end_offsets(s, s.topic_raw).values()) == EVENTS

    log_path = s.home / "streaming-job.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        job = subprocess.Popen([sys.executable, "-m", "streaming_job.job"], env=env, cwd=REPO_ROOT,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 420  # a Spark JVM starting on a loaded 2-core box
        accounted = -1
        while accounted < EVENTS:
            assert job.poll() is None, f"streaming job exited {job.returncode}; see {log_path}"
            assert time.monotonic() < deadline, f"{accounted}/{EVENTS} accounted; see {log_path}"
            time.sleep(2)
            with db.connect(s, "writer") as c:
                row = c.execute("SELECT coalesce(sum(input_rows), 0) FROM batch_ledger").fetchone()
                accounted = int(row[0]) if row else 0
        assert accounted == EVENTS
        with db.connect(s, "writer") as c:
            stored, dead = (c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                            for t in ("events", "dlq_events"))
        assert dead > 0 and stored + dead == EVENTS, (stored, dead)
        # the DLQ records went back to the secure broker (the sink's producer), one per row
        deadline = time.monotonic() + 30
        while sum(kafka_helpers.end_offsets(s, s.topic_dlq).values()) < dead:
            assert time.monotonic() < deadline, "DLQ topic short of the dlq_events rows"
            time.sleep(1)
        assert sum(kafka_helpers.end_offsets(s, s.topic_dlq).values()) == dead

        # the API: PostgreSQL over TLS for its pool, Kafka over SASL_SSL for the lag
        from fastapi.testclient import TestClient

        from api.main import create_app

        for k, v in external.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        try:
            with TestClient(create_app(get_settings())) as client:
                deadline = time.monotonic() + 30
                while True:
                    body = client.get("/stream").json()
                    if body["consumer_lag"]["total"] == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert body["consumer_lag"] == {"total": 0, "by_partition": body[
                    "consumer_lag"]["by_partition"], "error": None}, body
                assert len(body["consumer_lag"]["by_partition"]) == s.topic_raw_partitions
        finally:
            get_settings.cache_clear()
    finally:
        procs.terminate(job.pid, 30)
        job.wait(10)

    # Dagster's resources, built from the same variables (EnvVar fields resolved here)
    import dagster as dg

    from clickguard_dagster.resources import build_resources

    resources = build_resources(s)
    kafka, postgres = resources["kafka"], resources["postgres"]
    assert sum(kafka.end_offsets(s.topic_raw).values()) == EVENTS
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (stored,)
        assert conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
    # a batch asset on Spark: pgjdbc reads the events and writes the sessions over TLS too
    from clickguard_dagster.definitions import BATCH_ASSETS

    result = dg.materialize(BATCH_ASSETS, resources=resources, selection="daily_sessions")
    assert result.success
    with postgres.connect() as conn:
        assert conn.execute("SELECT sum(events) FROM daily_sessions").fetchone() == (stored,)
    print(f"external services: {stored} events stored, {dead} dead-lettered, sessions rebuilt")
