"""The dashboard's data sources: GET requests to the Clickstream Guardian API, and one query to
Dagster's public GraphQL API (the DLQ replay job's runs, which only Dagster knows).

Every failure becomes an :class:`ApiError` (or :class:`DagsterError`) whose message says what
to do, so a page shows one clear line instead of a traceback. One ``httpx.Client`` (keep-alive
connections) per service serves every browser session of the process; tests swap their
transport for canned payloads with :func:`use_transport`.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from clickguard.settings import Settings, get_settings

TIMEOUT_S = 5.0
DAGSTER_TIMEOUT_S = 3.0  # an optional section: never hold the DLQ page long

_lock = threading.Lock()
_client: ApiClient | None = None
_dagster: DagsterClient | None = None
_transport: httpx.BaseTransport | None = None

# Dagster's GraphQL schema (dagster-webserver /graphql); checked against it by the unit tests
RUNS_QUERY = """
query JobRuns($job: String!, $limit: Int!) {
  runsOrError(filter: {pipelineName: $job}, limit: $limit) {
    __typename
    ... on Runs { results { runId status creationTime startTime endTime } }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""


class ApiError(Exception):
    """A request that gave no usable answer; ``message`` is meant for the page."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


def api_url(settings: Settings) -> str:
    """``dashboard_api_url``, or the local API of ``api_host:api_port``."""
    url = settings.dashboard_api_url or f"http://{settings.api_host}:{settings.api_port}"
    return url.rstrip("/")


def dagster_url(settings: Settings) -> str:
    """``dashboard_dagster_url``, or the local Dagster UI."""
    url = settings.dashboard_dagster_url or f"http://{settings.dagster_host}:{settings.dagster_port}"
    return url.rstrip("/")


class ApiClient:
    """GET JSON from the API with the configured key; raises :class:`ApiError` on any failure."""

    def __init__(
        self, base_url: str, api_key: str | None = None,
        transport: httpx.BaseTransport | None = None, timeout: float = TIMEOUT_S,
    ) -> None:
        self.base_url = base_url
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def get(self, path: str, ok: tuple[int, ...] = (), **params: Any) -> Any:
        """The decoded JSON body of ``GET path?params`` (None values are left out); statuses in
        ``ok`` are answers too (/health is 503 with its usual body when the database is down)."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.http.get(path, params=query)
        except httpx.TimeoutException:
            raise ApiError(f"The API at {self.base_url} did not answer {path} within "
                           f"{self.http.timeout.read or TIMEOUT_S:g} s.") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"Cannot reach the API at {self.base_url} ({type(exc).__name__}). Is it running? "
                "Check `clickguard stack status`, or set CLICKGUARD_DASHBOARD_API_URL."
            ) from None
        if r.status_code == 401:
            raise ApiError("The API refused the request (401): set CLICKGUARD_API_KEY to the "
                           "API's key.", 401, "unauthorized")
        if r.status_code >= 400 and r.status_code not in ok:
            code, message = "error", r.text[:200]
            try:
                err = r.json()["error"]
                code, message = err["code"], err["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise ApiError(f"{path}: the API answered {r.status_code} {code}: {message}",
                           r.status_code, code)
        try:
            return r.json()
        except ValueError:
            raise ApiError(f"{path}: the API's answer is not JSON.", r.status_code) from None


class DagsterError(Exception):
    """Dagster gave no usable answer; ``message`` is meant for the page (an empty state)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DagsterClient:
    """Read-only GraphQL queries to the Dagster webserver (``dashboard_dagster_url``)."""

    def __init__(self, base_url: str, transport: httpx.BaseTransport | None = None,
                 timeout: float = DAGSTER_TIMEOUT_S) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    def runs(self, job: str, limit: int) -> dict[str, Any]:
        """The raw ``runsOrError`` answer for ``job``'s newest ``limit`` runs (parse it with
        :func:`dashboard.data.parse_runs`)."""
        hint = ("start it with `clickguard stack up dagster-webserver`, or set "
                "`CLICKGUARD_DASHBOARD_DAGSTER_URL`")
        try:
            r = self.http.post("/graphql", json={
                "query": RUNS_QUERY, "variables": {"job": job, "limit": limit}})
        except httpx.HTTPError as exc:
            raise DagsterError(f"Cannot reach Dagster at {self.base_url} "
                               f"({type(exc).__name__}): {hint}.") from None
        if r.status_code != 200:
            raise DagsterError(f"{self.base_url} answered {r.status_code} to Dagster's "
                               "GraphQL API (POST /graphql): is it the Dagster UI? Set "
                               "`CLICKGUARD_DASHBOARD_DAGSTER_URL` to the UI's address.")
        try:
            body = r.json()
        except ValueError:
            raise DagsterError(f"Dagster at {self.base_url} did not answer JSON: {hint}.") from None
        if not isinstance(body, dict):
            raise DagsterError(f"Unexpected answer from Dagster at {self.base_url}.")
        return body


def get_client() -> ApiClient:
    """The process-wide client, built from the settings on first use."""
    global _client
    with _lock:
        if _client is None:
            s = get_settings()
            _client = ApiClient(api_url(s), s.api_key, transport=_transport)
        return _client


def get_dagster() -> DagsterClient:
    """The process-wide Dagster client, built from the settings on first use."""
    global _dagster
    with _lock:
        if _dagster is None:
            _dagster = DagsterClient(dagster_url(get_settings()), transport=_transport)
        return _dagster


def use_transport(transport: httpx.BaseTransport | None) -> None:
    """Route every later request through ``transport`` (tests: canned API and Dagster
    payloads)."""
    global _client, _dagster, _transport
    with _lock:
        _transport, _client, _dagster = transport, None, None
