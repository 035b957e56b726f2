"""Mixed load: the smoke read mix plus writes (create, ingest batch, delete).

Writes to the target: opsverify runs it only from a test marked `mutating` (the suite owns
the target, or --allow-mutations). Every item it creates carries an `opsverify-load-` SKU and
is deleted again by the same user where the API allows it.
"""

from __future__ import annotations

import os
import uuid

# A module import, not `from smoke import ReadOnlyUser`: locust runs every User class it finds in
# this module's namespace, and the read-only user must not run here a second time. Locust puts
# the locustfile's folder on sys.path, so `smoke` is locustfiles/smoke.py.
import smoke as read_mix
from locust import task

INGEST_PATH = os.environ.get("OPS_PERF_INGEST_PATH", "/api/ingest")


def _item() -> dict[str, object]:
    return {"name": "opsverify load item", "sku": f"opsverify-load-{uuid.uuid4().hex}", "price_cents": 1234}


class MixedUser(read_mix.ReadOnlyUser):
    @task(2)
    def create_and_delete(self) -> None:
        response = self.client.post(read_mix.ITEMS_PATH, json=_item(), name=f"POST {read_mix.ITEMS_PATH}")
        if response.status_code == 201:
            item_id = response.json().get("id")
            if item_id is not None:
                self.client.delete(
                    f"{read_mix.ITEMS_PATH}/{item_id}", name=f"DELETE {read_mix.ITEMS_PATH}/{{id}}"
                )

    @task(1)
    def ingest_batch(self) -> None:
        self.client.post(INGEST_PATH, json={"items": [_item() for _ in range(5)]}, name=f"POST {INGEST_PATH}")
