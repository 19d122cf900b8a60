"""The dashboard's API client (URL, key, error messages), its server flags and its wiring into
the stack, the compose file and the demo's "where to look"."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml

from clickguard.settings import REPO_ROOT, Settings
from dashboard import serve
from dashboard.client import ApiClient, ApiError, api_url, dagster_url


def settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_urls_default_to_the_local_api_and_dagster() -> None:
    s = settings(api_port=8123, dagster_port=3123)
    assert api_url(s) == "http://127.0.0.1:8123"
    assert dagster_url(s) == "http://127.0.0.1:3123"
    s = settings(dashboard_api_url="https://api.example/", dashboard_dagster_url="http://d/")
    assert (api_url(s), dagster_url(s)) == ("https://api.example", "http://d")


def answer(status: int, body: bytes, seen: list[httpx.Request] | None = None) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body)

    return ApiClient("http://api", "k-1", transport=httpx.MockTransport(handle))


def test_the_key_is_sent_and_none_params_are_left_out() -> None:
    seen: list[httpx.Request] = []
    assert answer(200, b"[1]", seen).get("/anomalies", limit=5, anomaly_type=None) == [1]
    assert seen[0].headers["X-API-Key"] == "k-1"
    assert str(seen[0].url) == "http://api/anomalies?limit=5"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, b'{"error": {"code": "unauthorized", "message": "x"}}', "set CLICKGUARD_API_KEY"),
        (422, b'{"error": {"code": "validation_error", "message": "limit: too big"}}',
         "/x: the API answered 422 validation_error: limit: too big"),
        (502, b"<html>bad gateway</html>", "/x: the API answered 502 error: <html>bad gateway"),
        (200, b"not json", "/x: the API's answer is not JSON."),
    ],
)
def test_errors_become_one_readable_line(status: int, body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as err:
        answer(status, body).get("/x")
    assert message in err.value.message


def test_an_accepted_error_status_is_an_answer() -> None:
    assert answer(503, b'{"status": "unhealthy"}').get("/health", ok=(503,)) == {
        "status": "unhealthy"}


def test_timeout_and_refused_connection() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    c = ApiClient("http://api", transport=httpx.MockTransport(slow), timeout=2)
    with pytest.raises(ApiError, match="did not answer /stream within 2 s"):
        c.get("/stream")
    c = ApiClient("http://127.0.0.1:9", timeout=2)  # discard port: nothing listens
    with pytest.raises(ApiError, match=re.escape("Cannot reach the API at http://127.0.0.1:9")):
        c.get("/health")


def test_streamlit_flags_keep_it_local_and_quiet() -> None:
    args = serve.streamlit_args(settings(dashboard_port=8599))
    assert args[:2] == ["run", str(REPO_ROOT / "dashboard" / "app.py")]
    for flag in ("--server.headless=true", "--server.address=127.0.0.1", "--server.port=8599",
                 "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"):
        assert flag in args


def test_no_config_file_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit polls its config.toml paths every 200 ms unless the node removes the hook;
    a Streamlit upgrade that renames it fails here (the attribute must exist to be replaced)."""
    import streamlit.web.bootstrap as bootstrap

    watched: list[str] = []
    monkeypatch.setattr(bootstrap, "watch_file", lambda path, *a, **k: watched.append(path))
    bootstrap._install_config_watchers({})
    assert watched, "streamlit no longer watches config.toml: drop quiet_config_watchers"
    watched.clear()
    monkeypatch.setattr(bootstrap, "_install_config_watchers", bootstrap._install_config_watchers)
    serve.quiet_config_watchers()
    bootstrap._install_config_watchers({})
    assert watched == []


def test_compose_runs_the_dashboard_against_the_api_service() -> None:
    compose = yaml.safe_load((REPO_ROOT / "infra" / "docker-compose.yml").read_text())
    svc = compose["services"]["dashboard"]
    assert svc["ports"] == [f"127.0.0.1:{settings().dashboard_port}:8501"]
    assert svc["command"] == ["python", "-m", "dashboard.serve"]
    assert svc["environment"]["CLICKGUARD_DASHBOARD_API_URL"] == "http://api:8000"


def test_where_to_look_names_the_dashboard() -> None:
    from clickguard_proof.demo import where_to_look

    s = settings(dashboard_port=8502)
    assert "dashboard       http://127.0.0.1:8502" in where_to_look(s, ["api", "dashboard"])
    assert "8502" not in where_to_look(s, ["api"])
