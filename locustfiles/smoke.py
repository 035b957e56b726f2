"""Read-only smoke load (runbook: "quick load scenario (locust smoke 5–10 min): < 1 % 5xx").

Weighted like real traffic on the reference API: mostly item reads by id (cache hits and
misses), list pages, and the health probe a load balancer sends. Each simulated user sends
its own X-Client-Id, because the reference service rate-limits per client (100 req/s): one
shared id would turn the load test into a rate-limit test.

Request names are stable templates (`GET /api/items/{id}`), not URLs, so thresholds can name
them: `[perf.thresholds] "GET /api/items" = ["p(95)<800"]`.

Knobs (environment): OPS_PERF_WAIT_MIN_S / OPS_PERF_WAIT_MAX_S (think time, default 0.05–0.25).

FastHttpUser (geventhttpclient) rather than HttpUser (requests): it adds about a millisecond per
request instead of about five, so the latencies it reports are the service's, not locust's.
"""

from __future__ import annotations

import os
import random
import uuid

from locust import FastHttpUser, between, task

WAIT_MIN_S = float(os.environ.get("OPS_PERF_WAIT_MIN_S", "0.05"))
WAIT_MAX_S = float(os.environ.get("OPS_PERF_WAIT_MAX_S", "0.25"))
ITEMS_PATH = os.environ.get("OPS_PERF_ITEMS_PATH", "/api/items")
HEALTH_PATH = os.environ.get("OPS_PERF_HEALTH_PATH", "/healthz")


class ReadOnlyUser(FastHttpUser):
    wait_time = between(WAIT_MIN_S, WAIT_MAX_S)

    def __init__(self, *args: object, **kwargs: object) -> None:
        # Read when the client is built: one client id per simulated user.
        self.default_headers = {"X-Client-Id": f"opsverify-load-{uuid.uuid4().hex[:12]}"}
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def on_start(self) -> None:
        self.item_ids: list[int] = []
        self._refresh_ids()

    def _refresh_ids(self) -> None:
        with self.client.get(
            f"{ITEMS_PATH}?limit=100", name=f"GET {ITEMS_PATH}", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            try:
                items = response.json().get("items", [])
            except ValueError:
                response.failure("list answered non-JSON")
                return
            self.item_ids = [int(i["id"]) for i in items if "id" in i] or self.item_ids

    @task(6)
    def get_item(self) -> None:
        if not self.item_ids:
            self._refresh_ids()
            return
        self.client.get(f"{ITEMS_PATH}/{random.choice(self.item_ids)}", name=f"GET {ITEMS_PATH}/{{id}}")

    @task(3)
    def list_items(self) -> None:
        offset = random.randrange(0, 100)
        self.client.get(f"{ITEMS_PATH}?limit=20&offset={offset}", name=f"GET {ITEMS_PATH}")

    @task(1)
    def health(self) -> None:
        self.client.get(HEALTH_PATH, name=f"GET {HEALTH_PATH}")
