"""Every endpoint the runbook curls by hand answers its status within its budget."""

from __future__ import annotations

import pytest

from opsverify.config import Endpoint
from opsverify.session import OpsSession
from opsverify.smoke.probes import HttpProbe, PollResult
from opsverify.smoke.verdicts import (
    blocked_in_maintenance,
    endpoint_failure,
    endpoint_timeout_s,
    readiness_failure,
    readiness_path,
)

pytestmark = pytest.mark.smoke


def test_ready_within_budget(ops: OpsSession, readiness: PollResult | None, report_extra) -> None:
    """Office runbook: if /healthz is not 200 within 30 s of a start, collect logs and escalate."""
    if readiness is None:
        pytest.skip("profile has no smoke endpoints to poll")
    report_extra.text("last readiness exchange", readiness.last.exchange())
    failure = readiness_failure(readiness, readiness_path(ops.profile) or "", ops.profile.smoke.ready_timeout_s)
    assert failure is None, failure


def test_endpoint_answers_within_budget(
    endpoint: Endpoint, ops: OpsSession, http: HttpProbe, target, readiness, report_extra
) -> None:
    """Daily checks: each health/metrics/API path answers its status, fast enough to trust.

    With --expect-mode maintenance, API paths must answer 503 instead (loyalty runbook).
    """
    result = http.request(
        endpoint.method,
        endpoint.path,
        headers=target.endpoint_headers(endpoint),
        timeout_s=endpoint_timeout_s(endpoint),
    )
    report_extra.text("exchange", result.exchange())
    maintenance = ops.expect_mode == "maintenance" and blocked_in_maintenance(endpoint, ops.profile)
    failure = endpoint_failure(result, endpoint, allow_degraded=ops.allow_ready_degraded, maintenance=maintenance)
    assert failure is None, failure
