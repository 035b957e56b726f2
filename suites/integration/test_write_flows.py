"""Writing flows: create/read/delete, cache, throttling, outbox delivery and the size guards.

Marked `mutating`: they run on the suite-owned reference service, or with --allow-mutations.
"""

from __future__ import annotations

import pytest

from opsverify.integration import flows
from opsverify.session import OpsSession
from opsverify.smoke.metrics import scrape
from opsverify.smoke.probes import HttpProbe
from opsverify.target import Target

pytestmark = [
    pytest.mark.integration,
    pytest.mark.mutating,
    pytest.mark.usefixtures("normal_mode", "readiness"),
]


def _create(http: HttpProbe, ops: OpsSession, created, write_marker: str):  # type: ignore[no-untyped-def]
    result = http.request("POST", ops.profile.integration.items_path, json=flows.new_item(write_marker))
    body = flows.json_object(result)
    if body is not None and "id" in body:
        created.add(body["id"])
    assert result.status in (200, 201) and body is not None and "id" in body, (
        f"expected 201 with the new item's id, got {result.describe()}: {result.body[:200]!r}"
    )
    return body


def _shown(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def test_create_read_delete(
    ops: OpsSession, http: HttpProbe, created_items, write_marker: str, report_extra
) -> None:
    """The write path end to end: what was written reads back, and a delete really removes it."""
    path = ops.profile.integration.items_path
    item = _create(http, ops, created_items, write_marker)
    read = http.get(f"{path}/{item['id']}")
    report_extra.text("read back", read.exchange())
    body = flows.json_object(read) or {}
    assert read.status == 200 and body.get("sku") == item["sku"], (
        f"expected to read back sku {item['sku']!r}, got {read.describe()}: {read.body[:200]!r}"
    )
    deleted = http.request("DELETE", f"{path}/{item['id']}")
    assert deleted.status in (200, 202, 204), f"expected the delete to succeed, got {deleted.describe()}"
    created_items.forget(item["id"])
    gone = http.get(f"{path}/{item['id']}")
    assert gone.status == 404, (
        f"expected 404 after deleting id {item['id']}, got {gone.describe()} — a stale cache entry outlives "
        f"deletes"
    )


def test_second_read_served_from_cache(
    ops: OpsSession, http: HttpProbe, created_items, write_marker: str
) -> None:
    """Inventory runbook: "enable caching (Redis)"; a cache that never hits leaves the database carrying it
    all."""
    path = ops.profile.integration.items_path
    item = _create(http, ops, created_items, write_marker)
    first = http.get(f"{path}/{item['id']}")
    second = http.get(f"{path}/{item['id']}")
    assert first.status == 200 and second.status == 200, (
        f"expected both reads 200, got {first.describe()} and {second.describe()}"
    )
    assert (second.header("X-Cache") or "").upper() == "HIT", (
        f"expected the second read of id {item['id']} served from cache (X-Cache: HIT), got X-Cache: "
        f"{second.header('X-Cache')!r} ({second.describe()}) — check Redis and the service's REDIS_URL"
    )


def test_burst_is_throttled(ops: OpsSession, target: Target, figures, report_extra) -> None:
    """Ingest/loyalty runbooks: the rate limiter protects the database; a burst from one client gets 429."""
    cfg = ops.profile.integration
    client_id = f"{flows.run_marker()}-burst"
    result = flows.burst(
        target.base_url, f"{cfg.probe_path}?limit=1", cfg.rate_limit_burst, client_id=client_id
    )
    report_extra.text("burst", result.describe())
    figures.record("integration.burst_requests_until_429", result.sent, unit=" req")
    assert result.first_limited is not None, (
        f"expected 429 within a burst of {cfg.rate_limit_burst} GET {cfg.probe_path} from one X-Client-Id, "
        f"got {result.describe()} — the rate limiter is off or its backend (Redis) is unreachable"
    )
    retry_after = result.first_limited.header("Retry-After")
    assert retry_after and retry_after.strip().isdigit(), (
        f"expected 429 with Retry-After seconds, got Retry-After {retry_after!r} "
        f"({result.first_limited.describe()})"
        f" — clients cannot back off without it"
    )


def test_outbox_drains(
    ops: OpsSession,
    http: HttpProbe,
    target: Target,
    metrics_path: str,
    created_items,
    write_marker: str,
    figures,
) -> None:
    """Loyalty runbook: outbox pending must drain, and outbox_dead_total must not grow
    (ALERT_OUTBOX_DEAD_DELTA)."""
    cfg = ops.profile.integration
    headers = target.metrics_headers()
    before = scrape(http, metrics_path, headers)
    dead_before = before.value(cfg.outbox_dead_metric)
    assert before.ok and dead_before is not None, (
        f"expected {cfg.outbox_dead_metric} in {metrics_path}, got {before.describe()} — cannot watch the "
        f"outbox"
    )
    _create(http, ops, created_items, write_marker)
    waited = flows.wait_for(
        lambda: scrape(http, metrics_path, headers).value(cfg.outbox_pending_metric),
        lambda pending: pending == 0,
        timeout_s=cfg.outbox_drain_s,
    )
    figures.record(
        "integration.outbox_drain_s", round(waited.waited_s, 2), unit=" s", budget=cfg.outbox_drain_s
    )
    assert waited.satisfied, (
        f"expected {cfg.outbox_pending_metric} to reach 0 within {cfg.outbox_drain_s:g} s after a create, "
        f"got {_shown(waited.value)} after {waited.waited_s:.1f} s ({waited.attempts} scrapes, last values "
        f"{[_shown(v) for v in waited.seen]}) "
        f"— check the workers (WORKERS_ENABLED=1) and delivery errors (loyalty runbook)"
    )
    dead_after = scrape(http, metrics_path, headers).value(cfg.outbox_dead_metric)
    assert dead_after == dead_before, (
        f"expected {cfg.outbox_dead_metric} to stay at {dead_before:g}, got {dead_after} — deliveries are "
        f"being "
        f"dead-lettered; check webhook status codes and URLs (loyalty runbook: растёт outbox dead)"
    )


def test_oversized_body_refused(
    ops: OpsSession, http: HttpProbe, created_items, write_marker: str, report_extra
) -> None:
    """Ingest runbook: a body above MAX_REQUEST_BODY_BYTES gets 413 PAYLOAD_TOO_LARGE before it costs
    anything."""
    cfg = ops.profile.integration
    body = flows.oversized_body(write_marker, cfg.max_body_bytes)
    result = http.request("POST", cfg.items_path, content=body, headers={"Content-Type": "application/json"})
    report_extra.text("exchange", result.exchange())
    created = flows.json_object(result) or {}
    if "id" in created:
        created_items.add(created["id"])
    assert result.status == 413 and flows.error_code(result) == "PAYLOAD_TOO_LARGE", (
        f"expected 413 PAYLOAD_TOO_LARGE for a {len(body)} byte body (limit {cfg.max_body_bytes}), got "
        f"{result.describe()}: {result.body[:200]!r} — the request-size guard is off; set "
        f"MAX_REQUEST_BODY_BYTES"
    )


def test_batch_above_limit_refused(ops: OpsSession, http: HttpProbe, write_marker: str, report_extra) -> None:
    """Ingest runbook: the batch limit (INGEST_MAX_BATCH_ITEMS) blocks oversized list payloads."""
    cfg = ops.profile.integration
    if not cfg.ingest_path:
        pytest.skip(f"{ops.profile.name} has no integration.ingest_path")
    count = cfg.max_batch_items + 1
    result = http.request("POST", cfg.ingest_path, json=flows.batch(write_marker, count))
    report_extra.text("exchange", result.exchange())
    assert result.status in flows.REFUSED_BATCH_STATUSES, (
        f"expected a batch of {count} items (limit {cfg.max_batch_items}) refused with "
        f"{'/'.join(map(str, flows.REFUSED_BATCH_STATUSES))}, got {result.describe()}: {result.body[:200]!r} "
        f"— set INGEST_MAX_BATCH_ITEMS (ingest runbook)"
    )
