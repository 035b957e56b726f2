"""X-Request-Id: the thread an operator pulls to find one request in the logs."""

from __future__ import annotations

import secrets

import pytest

from opsverify.session import OpsSession
from opsverify.smoke.probes import HttpProbe
from opsverify.smoke.verdicts import request_id_echo_failure, request_id_generated_failure

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def request_id_path(ops: OpsSession) -> str:
    """The path the request-id checks call (smoke.request_id_path); skips when unset.
    Override to pick another.
    """
    if not ops.profile.smoke.request_id_path:
        pytest.skip(f"{ops.profile.name}: smoke.request_id_path is unset (request-id checks disabled)")
    return ops.profile.smoke.request_id_path


def test_request_id_is_echoed(
    ops: OpsSession, http: HttpProbe, request_id_path: str, readiness, report_extra
) -> None:
    """Ingest runbook: "check logs using X-Request-Id" only works if the id a client sent comes back."""
    header = ops.profile.smoke.request_id_header
    sent = f"opsverify-{secrets.token_hex(8)}"
    result = http.get(request_id_path, headers={header: sent})
    report_extra.text("exchange", result.exchange())
    failure = request_id_echo_failure(result, header, sent)
    assert failure is None, failure


def test_request_id_is_generated(
    ops: OpsSession, http: HttpProbe, request_id_path: str, readiness, report_extra
) -> None:
    """A request that arrives without an id still gets one, so every log line can be correlated."""
    header = ops.profile.smoke.request_id_header
    result = http.get(request_id_path)
    report_extra.text("exchange", result.exchange())
    failure = request_id_generated_failure(result, header)
    assert failure is None, failure
