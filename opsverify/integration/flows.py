"""Integration flows: payloads, response shapes, bursts and bounded waits.

The checks in suites/integration say what must hold; this module sends the traffic and
measures. Every write it makes is tagged with the run's marker so leftovers are recognisable.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opsverify.smoke.probes import HttpProbe, ProbeResult

# Lists come back bare or wrapped under one of these keys.
LIST_KEYS = ("items", "data", "results")
MISSING_ID = 2_000_000_000
REFUSED_BATCH_STATUSES = (400, 413, 422)
WRITE_REFUSED_STATUSES = (403, 405, 409, 423, 503)
T = TypeVar("T")


def run_marker() -> str:
    return f"opsv-{secrets.token_hex(4)}"


def new_item(marker: str, suffix: str = "0") -> dict[str, Any]:
    return {
        "name": f"{marker} smoke item",
        "sku": f"{marker}-{suffix}",
        "price_cents": 100,
        "category": "opsverify",
    }


def batch(marker: str, count: int) -> dict[str, Any]:
    return {"items": [new_item(marker, str(i)) for i in range(count)]}


def oversized_body(marker: str, limit_bytes: int) -> bytes:
    """A well-formed item whose JSON is past the byte limit (so only the size guard can refuse it)."""
    item = new_item(marker)
    item["name"] = "x" * (limit_bytes + 1024)
    return json.dumps(item).encode()


def items_of(result: ProbeResult) -> list[dict[str, Any]] | None:
    """The list in a list response, bare or under items/data/results; None when the shape is wrong."""
    try:
        payload = result.json()
    except ValueError:
        return None
    if isinstance(payload, dict):
        payload = next((payload[k] for k in LIST_KEYS if isinstance(payload.get(k), list)), None)
    if not isinstance(payload, list) or not all(isinstance(i, dict) for i in payload):
        return None
    return payload


def json_object(result: ProbeResult) -> dict[str, Any] | None:
    try:
        payload = result.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def error_code(result: ProbeResult) -> str | None:
    body = json_object(result)
    code = body.get("code") if body else None
    return str(code) if code is not None else None


def shape_problems(item: dict[str, Any], required: tuple[str, ...] = ("id",)) -> list[str]:
    return [f"missing field {key!r}" for key in required if key not in item]


@dataclass(frozen=True)
class BurstResult:
    sent: int
    statuses: Counter[int | None]
    elapsed_s: float
    first_limited: ProbeResult | None = None
    sample: ProbeResult | None = None

    def describe(self) -> str:
        counts = ", ".join(
            f"{status if status is not None else 'no answer'}×{n}"
            for status, n in sorted(self.statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        )
        return f"{self.sent} requests in {self.elapsed_s:.2f} s: {counts}"


def burst(
    base_url: str, path: str, count: int, *, client_id: str, workers: int = 16, timeout_s: float = 10.0
) -> BurstResult:
    """Up to `count` GETs as fast as `workers` connections allow, all with one X-Client-Id.

    Stops at the first 429: the promise is "a burst gets throttled", and every request after
    the first refusal is load for nothing.
    """
    lock = threading.Lock()
    stop = threading.Event()
    statuses: Counter[int | None] = Counter()
    firsts: dict[str, ProbeResult] = {}
    issued = [0]

    with HttpProbe(base_url, timeout_s=timeout_s) as probe:

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    if issued[0] >= count:
                        return
                    issued[0] += 1
                result = probe.get(path, headers={"X-Client-Id": client_id})
                with lock:
                    statuses[result.status] += 1
                    firsts.setdefault("sample", result)
                    if result.status == 429:
                        firsts.setdefault("limited", result)
                        stop.set()

        started = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(workers, count)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout_s * count)
        elapsed = time.monotonic() - started
    return BurstResult(sum(statuses.values()), statuses, elapsed, firsts.get("limited"), firsts.get("sample"))


@dataclass(frozen=True)
class Waited:
    """A bounded wait for a value: what was seen last, after how long, whether it was accepted."""

    value: Any
    waited_s: float
    attempts: int
    satisfied: bool
    seen: list[Any] = field(default_factory=list)


def wait_for(
    read: Callable[[], T], accept: Callable[[T], bool], *, timeout_s: float, interval_s: float = 0.25
) -> Waited:
    started = time.monotonic()
    attempts = 0
    seen: list[Any] = []
    while True:
        attempts += 1
        value = read()
        seen.append(value)
        waited = time.monotonic() - started
        if accept(value):
            return Waited(value, waited, attempts, True, seen[-10:])
        if waited + interval_s >= timeout_s:
            return Waited(value, waited, attempts, False, seen[-10:])
        time.sleep(interval_s)
