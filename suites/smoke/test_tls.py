"""TLS: the certificate the clients see is not about to expire."""

from __future__ import annotations

import pytest

from opsverify.session import OpsSession
from opsverify.smoke.tls import certificate_info, expiry_failure, https_endpoint
from opsverify.target import Target

pytestmark = pytest.mark.smoke
TIMEOUT_S = 10.0


def test_certificate_not_expiring_soon(ops: OpsSession, target: Target, figures) -> None:
    """Inventory runbook: certificates renew 30 days before expiry; fewer days left means renewal is
    broken."""
    endpoint = https_endpoint(target.base_url)
    if endpoint is None:
        pytest.skip(f"TLS check skipped: {target.base_url} is not https (no certificate to check)")
    info = certificate_info(*endpoint, timeout_s=TIMEOUT_S)
    if info.days_left is not None:
        figures.record(
            "tls.days_left",
            round(info.days_left, 1),
            unit=" d",
            budget=ops.profile.tls.min_days,
            higher_is_better=True,
        )
    failure = expiry_failure(info, ops.profile.tls.min_days)
    assert failure is None, failure
