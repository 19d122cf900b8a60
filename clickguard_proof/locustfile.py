"""Locust users for the API benchmark (run headless by clickguard_proof/api_bench.py).

``ApiUser`` mixes every read endpoint, weighted towards the three the issue measures
(/anomalies, /stats, /metrics/summary); ``BaselineUser`` hits the bare uvicorn app. Each user
paces itself with ``constant_throughput`` (requests/s per user, env CLICKGUARD_BENCH_USER_RATE), so
users × rate is the offered load and latency is measured below saturation, not at a queue's end.
Requests with a variable part are grouped under their route template (``name=``).
"""

from __future__ import annotations

import datetime as dt
import os
import random

from locust import FastHttpUser, constant_throughput, task

RATE = float(os.environ.get("CLICKGUARD_BENCH_USER_RATE", "20"))
API_KEY = os.environ.get("CLICKGUARD_API_KEY")
SESSIONS = int(os.environ.get("CLICKGUARD_BENCH_SESSIONS", "100000"))


class ApiUser(FastHttpUser):
    wait_time = constant_throughput(RATE)

    def on_start(self) -> None:
        self.today = dt.date.today()

    def _day(self) -> str:
        return (self.today - dt.timedelta(days=random.randrange(0, 30))).isoformat()

    def _get(self, path: str, name: str | None = None) -> None:
        with self.client.get(path, name=name or path, headers=_auth(),
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")

    @task(20)
    def anomalies(self) -> None:
        self._get("/anomalies")

    @task(20)
    def stats(self) -> None:
        self._get("/stats")

    @task(20)
    def summary(self) -> None:
        self._get("/metrics/summary")

    @task(3)
    def anomalies_filtered(self) -> None:
        self._get("/anomalies?anomaly_type=BOT_LIKE&min_score=2&limit=50",
                  "/anomalies?anomaly_type&min_score")

    @task(3)
    def anomaly_types(self) -> None:
        self._get("/anomalies/types")

    @task(3)
    def timeline(self) -> None:
        self._get("/anomalies/timeline?hours=24", "/anomalies/timeline")

    @task(3)
    def session(self) -> None:
        self._get(f"/anomalies/{random.randint(1, SESSIONS)}", "/anomalies/{session_id}")

    @task(2)
    def daily_range(self) -> None:
        start = self.today - dt.timedelta(days=30)
        self._get(f"/metrics/daily?start_date={start}&end_date={self.today}", "/metrics/daily")

    @task(2)
    def daily_one(self) -> None:
        self._get(f"/metrics/daily/{self._day()}", "/metrics/daily/{date}")

    @task(2)
    def funnel(self) -> None:
        self._get(f"/metrics/funnel/{self._day()}", "/metrics/funnel/{date}")

    @task(2)
    def popular(self) -> None:
        self._get(f"/items/popular/{self._day()}", "/items/popular/{date}")

    @task(2)
    def categories(self) -> None:
        self._get(f"/items/categories/{self._day()}", "/items/categories/{date}")

    @task(2)
    def trending(self) -> None:
        self._get("/items/trending")

    @task(1)
    def dlq(self) -> None:
        self._get("/dlq")

    @task(1)
    def slo(self) -> None:
        self._get("/slo")

    @task(1)
    def stream(self) -> None:
        self._get("/stream")

    @task(1)
    def prometheus(self) -> None:
        self._get("/metrics")


class BaselineUser(FastHttpUser):
    wait_time = constant_throughput(RATE)

    @task
    def constant(self) -> None:
        self.client.get("/", name="baseline /")


class KeyEndpointsUser(FastHttpUser):
    """Only the three endpoints the issue sets the target on, in equal shares."""

    wait_time = constant_throughput(RATE)

    @task
    def anomalies(self) -> None:
        self.client.get("/anomalies", headers=_auth())

    @task
    def stats(self) -> None:
        self.client.get("/stats", headers=_auth())

    @task
    def summary(self) -> None:
        self.client.get("/metrics/summary", headers=_auth())


def _auth() -> dict[str, str]:
    return {"X-API-Key": API_KEY} if API_KEY else {}
