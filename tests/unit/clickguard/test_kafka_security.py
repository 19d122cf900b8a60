"""Managed-service settings become the exact client configs (the integration test
tests/integration/test_external_services.py proves them against a SASL_SSL broker and a
TLS-only PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings


def test_plaintext_adds_nothing() -> None:
    s = Settings(_env_file=None)
    assert kafka_helpers.client_security(s) == {}
    assert kafka_helpers.spark_kafka_options(s) == {}
    assert "security.protocol" not in kafka_helpers.producer_config(s)


def test_sasl_ssl_reaches_librdkafka_and_spark(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = Settings(_env_file=None, kafka_bootstrap="b:9093", kafka_security_protocol="SASL_SSL",
                 kafka_sasl_mechanism="SCRAM-SHA-256", kafka_sasl_username="u",
                 kafka_sasl_password='p"w\\d', kafka_ssl_ca_location=ca)
    security = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "u", "sasl.password": 'p"w\\d', "ssl.ca.location": str(ca)}
    assert kafka_helpers.client_security(s) == security
    assert kafka_helpers.client_config(s, {"group.id": "g"}) == {
        "bootstrap.servers": "b:9093", **security, "group.id": "g"}
    assert security.items() <= kafka_helpers.producer_config(s).items()
    # the Java client: a JAAS line with the quotes and backslash escaped, a PEM trust store
    assert kafka_helpers.spark_kafka_options(s) == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-256",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule "
                                  'required username="u" password="p\\"w\\\\d";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(ca),
    }
    plain = s.model_copy(update={"kafka_sasl_mechanism": "PLAIN",
                                 "kafka_security_protocol": "SASL_PLAINTEXT"})
    opts = kafka_helpers.spark_kafka_options(plain)
    assert opts["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert "kafka.ssl.truststore.location" not in opts  # no TLS: the CA is not used


def test_ssl_without_sasl_and_missing_credentials(tmp_path: Path) -> None:
    s = Settings(_env_file=None, kafka_security_protocol="SSL")
    assert kafka_helpers.client_security(s) == {"security.protocol": "SSL"}
    with pytest.raises(ValueError, match="CLICKGUARD_KAFKA_SASL_USERNAME"):
        kafka_helpers.client_security(Settings(_env_file=None,
                                               kafka_security_protocol="SASL_SSL"))


def test_postgres_tls_reaches_libpq_pgjdbc_and_dagster(tmp_path: Path) -> None:
    import yaml

    from clickguard.dagster_env import render_instance_yaml
    from clickguard_dagster.resources import build_resources

    ca = tmp_path / "root.crt"
    s = Settings(_env_file=None, home=tmp_path, pg_sslmode="verify-full", pg_sslrootcert=ca)
    assert s.pg_dsn("reader").endswith(f"sslmode=verify-full sslrootcert={ca}")
    pg = build_resources(s)["postgres"]
    assert pg.jdbc_url.endswith(f"?stringtype=unspecified&sslmode=verify-full&sslrootcert={ca}")
    storage = yaml.safe_load(render_instance_yaml(s))["storage"]["custom"]["config"]
    assert storage["postgres_db"]["params"] == {"sslmode": "verify-full", "sslrootcert": str(ca)}
    default = Settings(_env_file=None, home=tmp_path)
    assert default.pg_dsn("reader").endswith("sslmode=prefer")  # libpq's own default
    assert yaml.safe_load(render_instance_yaml(default))["storage"]["custom"]["config"][
        "postgres_db"]["params"] == {"sslmode": "prefer"}


def test_registry_credentials_become_basic_auth_and_stay_out_of_messages() -> None:
    """A registry that answers 401 without the right basic auth (a real HTTP server on
    127.0.0.1): the client built from ``Settings.schema_registry_url`` gets in, its printable
    URL holds no secret, and a wrong password fails with an error that does not show it."""
    import base64
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from clickguard.contract import RegistryClient

    user, password = "api:key", "p@ss/wörd"
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    seen: list[str | None] = []

    class Registry(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == expected
            body = json.dumps({"id": 7} if ok else {"error_code": 401}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
        s = Settings(_env_file=None, registry_url=base, registry_username=user,
                     registry_password=password)
        client = RegistryClient(s.schema_registry_url)
        assert client.url == base
        assert client.register("t-value", {"type": "string"}) == 7
        assert seen == [expected]
        wrong = RegistryClient(s.model_copy(update={"registry_password": "nope"})
                               .schema_registry_url)
        with pytest.raises(httpx.HTTPStatusError) as err:
            wrong.register("t-value", {"type": "string"})
        assert "401" in str(err.value) and "nope" not in str(err.value)
        assert RegistryClient(Settings(_env_file=None, registry_url=base)
                              .schema_registry_url).url == base  # no credentials: unchanged
    finally:
        server.shutdown()
        server.server_close()
