"""A locustfile whose users never reach the service: each one hangs in a 'login' step.

Used by tests/test_perf_gate.py to prove the count guard: a load that sent (almost) nothing
must fail for that reason instead of passing every threshold over zero samples.
"""

from __future__ import annotations

import gevent
from locust import HttpUser, constant, task


class StuckUser(HttpUser):
    wait_time = constant(1)

    def on_start(self) -> None:
        gevent.sleep(3600)  # a login that never answers; the run's duration ends it

    @task
    def list_items(self) -> None:
        self.client.get("/api/items", name="GET /api/items")
