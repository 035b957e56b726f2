"""Degraded mode: the service may say "not ready", but it must never say "dead"."""

from __future__ import annotations

import pytest

from opsverify.session import OpsSession
from opsverify.smoke.probes import HttpProbe
from opsverify.smoke.verdicts import degraded_failures

pytestmark = pytest.mark.smoke


def test_liveness_holds_while_degraded(
    ops: OpsSession, http: HttpProbe, target, readiness, report_extra
) -> None:
    """Ingest runbook: with --allow-ready-degraded readiness may answer 503, liveness must stay 200.

    A 503 from liveness makes the orchestrator restart a service that is only waiting for a
    dependency, turning a degradation into an outage.
    """
    if not ops.allow_ready_degraded:
        pytest.skip("degraded-mode check runs with --allow-ready-degraded (ingest runbook)")
    probed = [e for e in ops.profile.smoke.endpoints if e.kind in ("live", "ready")]
    if not any(e.kind == "live" for e in probed):
        pytest.skip(f'{ops.profile.name} marks no smoke endpoint kind = "live"')
    results = [(e, http.request(e.method, e.path, headers=target.endpoint_headers(e))) for e in probed]
    report_extra.text("exchanges", "\n\n".join(r.exchange() for _, r in results))
    failures = degraded_failures(results)
    assert not failures, (
        "degraded mode: " + "; ".join(failures) + " — liveness must stay 200 while a dependency is out; "
        "fix the liveness handler so it does not depend on the database/Redis"
    )
