"""Maintenance and read-only modes hold: the pressure valves of the loyalty runbook actually work."""

from __future__ import annotations

import pytest

from opsverify.integration import flows
from opsverify.session import OpsSession
from opsverify.smoke.probes import HttpProbe
from opsverify.target import Target

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("readiness")]


def _expect(ops: OpsSession, mode: str) -> None:
    if ops.expect_mode != mode:
        pytest.skip(
            f"target is expected in {ops.expect_mode} mode; run with --expect-mode {mode} to check it"
        )


def test_maintenance_blocks_api(ops: OpsSession, http: HttpProbe, report_extra) -> None:
    """Loyalty runbook: MAINTENANCE_MODE=1 blocks every request except health/metrics, relieving the
    database."""
    _expect(ops, "maintenance")
    path = ops.profile.integration.probe_path
    result = http.get(path)
    report_extra.text("exchange", result.exchange())
    assert result.status == 503, (
        f"expected 503 from {path} in maintenance mode, got {result.describe()} — MAINTENANCE_MODE is not in "
        f"effect; check the deployed environment and restart the containers (loyalty runbook)"
    )


def test_maintenance_keeps_health_and_metrics(
    ops: OpsSession, http: HttpProbe, target: Target, report_extra
) -> None:
    """Probes and scrapes keep answering in maintenance, or the orchestrator kills the instances."""
    _expect(ops, "maintenance")
    checks = [
        (e.path, target.endpoint_headers(e))
        for e in ops.profile.smoke.endpoints
        if e.kind in ("live", "ready")
    ]
    if ops.profile.metrics.path:
        checks.append((ops.profile.metrics.path, target.metrics_headers()))
    results = [http.get(path, headers=headers) for path, headers in checks]
    report_extra.text("exchanges", "\n\n".join(r.exchange() for r in results))
    bad = [r.describe() for r in results if r.status != 200]
    assert not bad, f"expected 200 from health and metrics paths in maintenance mode, got: {'; '.join(bad)}"


def test_read_only_serves_reads(ops: OpsSession, http: HttpProbe, report_extra) -> None:
    """Field-service runbook: read-only mode stops writes during data recovery, while users can still read."""
    _expect(ops, "read-only")
    path = ops.profile.integration.probe_path
    result = http.get(path)
    report_extra.text("exchange", result.exchange())
    assert result.status == 200, f"expected GET {path} to work in read-only mode, got {result.describe()}"


@pytest.mark.mutating
def test_read_only_refuses_writes(
    ops: OpsSession, http: HttpProbe, created_items, write_marker: str, report_extra
) -> None:
    """Loyalty runbook: READ_ONLY_MODE=1 allows only GET/HEAD/OPTIONS; a write that lands corrupts a
    recovery."""
    _expect(ops, "read-only")
    path = ops.profile.integration.items_path
    result = http.request("POST", path, json=flows.new_item(write_marker))
    report_extra.text("exchange", result.exchange())
    body = flows.json_object(result) or {}
    if result.status in (200, 201) and "id" in body:
        created_items.add(body["id"])
    assert result.status in flows.WRITE_REFUSED_STATUSES, (
        f"expected a write refused ({'/'.join(map(str, flows.WRITE_REFUSED_STATUSES))}) in read-only mode, "
        f"got "
        f"{result.describe()}: {result.body[:200]!r} — READ_ONLY_MODE is not in effect; writes reach the "
        f"database"
    )
