"""Smoke verdicts: is an answer what the profile promised? Pure functions over probe results."""

from __future__ import annotations

from opsverify.config import Endpoint, Profile
from opsverify.smoke.probes import HttpProbe, PollResult, ProbeResult, poll_until

DEGRADED_STATUS = 503


def readiness_path(profile: Profile) -> str | None:
    if profile.smoke.ready_path:
        return profile.smoke.ready_path
    for endpoint in profile.smoke.endpoints:
        if endpoint.kind == "ready":
            return endpoint.path
    return profile.smoke.endpoints[0].path if profile.smoke.endpoints else None


def wait_until_ready(
    http: HttpProbe, path: str, timeout_s: float, *, allow_degraded: bool = False
) -> PollResult:
    accepted = {200, DEGRADED_STATUS} if allow_degraded else {200}
    return poll_until(
        lambda: http.get(path, timeout_s=min(5.0, timeout_s)),
        lambda r: r.status in accepted,
        timeout_s=timeout_s,
    )


MAINTENANCE_STATUS = 503


def expected_statuses(endpoint: Endpoint, *, allow_degraded: bool, maintenance: bool = False) -> list[int]:
    # Loyalty runbook: maintenance blocks every request except health/metrics (blocked_in_maintenance).
    if maintenance:
        return [MAINTENANCE_STATUS]
    # Ingest runbook: in degrade mode readiness may answer 503, liveness must stay 200.
    if allow_degraded and endpoint.kind == "ready" and DEGRADED_STATUS not in endpoint.status:
        return [*endpoint.status, DEGRADED_STATUS]
    return list(endpoint.status)


def endpoint_timeout_s(endpoint: Endpoint) -> float:
    """Waiting far past an endpoint's budget proves nothing more: twice the budget, at least 2 s."""
    return max(2.0, 2 * endpoint.max_ms / 1000)


def endpoint_failure(
    result: ProbeResult, endpoint: Endpoint, *, allow_degraded: bool = False, maintenance: bool = False
) -> str | None:
    """None when the answer keeps the promise; otherwise the operator-facing reason."""
    statuses = expected_statuses(endpoint, allow_degraded=allow_degraded, maintenance=maintenance)
    expected = " or ".join(str(s) for s in statuses)
    if result.status not in statuses:
        why = " (target expected in maintenance mode)" if maintenance else ""
        return f"expected {expected}{why} within {endpoint.max_ms:.0f} ms, got {result.describe()}"
    if result.elapsed_ms > endpoint.max_ms:
        return f"expected {expected} within {endpoint.max_ms:.0f} ms, got {result.describe()} (over budget)"
    return None


def readiness_failure(poll: PollResult, path: str, timeout_s: float) -> str | None:
    if poll.satisfied:
        return None
    return (
        f"{path} did not answer 200 within {timeout_s:.0f} s ({poll.attempts} attempts); last: "
        f"{poll.last.describe()}"
        f" — collect the service log and escalate (office runbook)"
    )


# ---------------------------------------------------------------------------------------------
# Degraded mode, request ids, config sanity, metrics traffic


def blocked_in_maintenance(endpoint: Endpoint, profile: Profile) -> bool:
    """Every non-health path answers 503 in maintenance; health and metrics keep answering."""
    path = endpoint.path.split("?", 1)[0]
    return endpoint.kind == "plain" and path != profile.metrics.path


def degraded_failures(results: list[tuple[Endpoint, ProbeResult]]) -> list[str]:
    """Ingest runbook: while degraded, readiness may say 503, liveness must stay 200."""
    failures = []
    for endpoint, result in results:
        allowed = (200,) if endpoint.kind == "live" else (200, DEGRADED_STATUS)
        if result.status not in allowed:
            role = "liveness" if endpoint.kind == "live" else "readiness"
            failures.append(
                f"{role} {endpoint.path}: expected {' or '.join(map(str, allowed))}, got {result.describe()}"
            )
    return failures


def traffic_path(profile: Profile) -> str | None:
    """A path to send traffic to between two scrapes: a plain (API) endpoint first, else any."""
    plain = [e.path for e in profile.smoke.endpoints if e.kind == "plain" and e.path != profile.metrics.path]
    others = [e.path for e in profile.smoke.endpoints if e.path != profile.metrics.path]
    candidates = plain or others
    return candidates[0] if candidates else None


def request_id_echo_failure(result: ProbeResult, header: str, sent: str) -> str | None:
    got = result.header(header)
    if result.status is None:
        return f"expected an answer echoing {header}, got {result.describe()}"
    if got != sent:
        shown = "no such header" if got is None else repr(got)
        return (
            f"expected {header}: {sent!r} echoed back, got {shown} ({result.describe()}) — without it "
            f"operators cannot find a request in the logs (ingest runbook: check logs using {header})"
        )
    return None


def request_id_generated_failure(result: ProbeResult, header: str) -> str | None:
    got = result.header(header)
    if result.status is None:
        return f"expected an answer carrying a generated {header}, got {result.describe()}"
    if not got or not got.strip():
        return (
            f"expected a generated {header} when the client sends none, got no such header "
            f"({result.describe()}) — enable the request-id middleware"
        )
    return None


def config_value_failure(env: str, value: str | None, min_bytes: int, *, required: bool) -> str | None:
    """Length checks only; the value itself is never part of a message."""
    if value is None or value == "":
        if not required:
            return None
        return (
            f"{env} is not set; expected a value of ≥ {min_bytes} bytes — set it in the service's environment"
        )
    size = len(value.encode("utf-8"))
    if size < min_bytes:
        return (
            f"{env} is {size} bytes; expected ≥ {min_bytes} bytes (ingest runbook: JWT_SECRET minimum 32 "
            f"bytes) "
            f"— generate a longer one (e.g. `openssl rand -hex 32`) and rotate it (value not shown)"
        )
    return None
