"""The dashboard's only data source: GET requests to the Clickstream Guardian API.

Every failure becomes an :class:`ApiError` whose message says what to do, so a page shows one
clear line instead of a traceback. One ``httpx.Client`` (keep-alive connections) serves every
browser session of the process; tests swap its transport for canned payloads with
:func:`use_transport`.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from clickguard.settings import Settings, get_settings

TIMEOUT_S = 5.0

_lock = threading.Lock()
_client: ApiClient | None = None
_transport: httpx.BaseTransport | None = None


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


def get_client() -> ApiClient:
    """The process-wide client, built from the settings on first use."""
    global _client
    with _lock:
        if _client is None:
            s = get_settings()
            _client = ApiClient(api_url(s), s.api_key, transport=_transport)
        return _client


def use_transport(transport: httpx.BaseTransport | None) -> None:
    """Route every later request through ``transport`` (tests: canned API payloads)."""
    global _client, _transport
    with _lock:
        _transport, _client = transport, None
