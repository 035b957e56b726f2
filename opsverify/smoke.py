"""Smoke verdicts: is an answer what the profile promised? Pure functions over probe results."""

from __future__ import annotations

from opsverify.config import Endpoint, Profile
from opsverify.probes import HttpProbe, PollResult, ProbeResult, poll_until

DEGRADED_STATUS = 503


def readiness_path(profile: Profile) -> str | None:
    if profile.smoke.ready_path:
        return profile.smoke.ready_path
    for endpoint in profile.smoke.endpoints:
        if endpoint.kind == "ready":
            return endpoint.path
    return profile.smoke.endpoints[0].path if profile.smoke.endpoints else None


def wait_until_ready(http: HttpProbe, path: str, timeout_s: float, *, allow_degraded: bool = False) -> PollResult:
    accepted = {200, DEGRADED_STATUS} if allow_degraded else {200}
    return poll_until(
        lambda: http.get(path, timeout_s=min(5.0, timeout_s)),
        lambda r: r.status in accepted,
        timeout_s=timeout_s,
    )


def expected_statuses(endpoint: Endpoint, *, allow_degraded: bool) -> list[int]:
    # Ingest runbook: in degrade mode readiness may answer 503, liveness must stay 200.
    if allow_degraded and endpoint.kind == "ready" and DEGRADED_STATUS not in endpoint.status:
        return [*endpoint.status, DEGRADED_STATUS]
    return list(endpoint.status)


def endpoint_failure(result: ProbeResult, endpoint: Endpoint, *, allow_degraded: bool = False) -> str | None:
    """None when the answer keeps the promise; otherwise the operator-facing reason."""
    statuses = expected_statuses(endpoint, allow_degraded=allow_degraded)
    expected = " or ".join(str(s) for s in statuses)
    if result.status not in statuses:
        return f"expected {expected} within {endpoint.max_ms:.0f} ms, got {result.describe()}"
    if result.elapsed_ms > endpoint.max_ms:
        return f"expected {expected} within {endpoint.max_ms:.0f} ms, got {result.describe()} (over budget)"
    return None


def readiness_failure(poll: PollResult, path: str, timeout_s: float) -> str | None:
    if poll.satisfied:
        return None
    return (
        f"{path} did not answer 200 within {timeout_s:.0f} s ({poll.attempts} attempts); last: {poll.last.describe()}"
        f" — collect the service log and escalate (office runbook)"
    )
