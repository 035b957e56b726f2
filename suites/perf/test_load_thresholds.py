"""Under a quick locust load the service holds its latency and error-rate thresholds.

Runbooks: "quick load scenario (locust smoke 5–10 min): < 1 % 5xx"; "API p95 > 1000 ms →
investigate, error rate > 1 % → alert". One load run per session; every threshold of the
profile's [perf.thresholds] is its own check on it.
"""

from __future__ import annotations

import pytest

from fixtures.perf import BadThreshold, profile_thresholds, total_threshold
from opsverify.perf import LoadResult, summary_fragment
from opsverify.perf.thresholds import Threshold, evaluate
from opsverify.session import OpsSession

pytestmark = pytest.mark.perf


def _failure_context(load: LoadResult, scope: str) -> str:
    lines = [f"  load: {load.describe()}"]
    if load.aborted:
        lines.append(f"  stopped early (abort_on_fail): {load.aborted}")
    for failure in load.top_failures(scope):
        lines.append(f"  top failure: {failure.occurrences}× {failure.name}: {failure.error}")
    return "\n".join(lines)


def test_enough_requests_for_a_verdict(
    ops: OpsSession, load_run: LoadResult, min_requests: int, figures, report_extra
) -> None:
    """A load that sent almost nothing proves nothing: thresholds over a handful of requests
    (or none — k6's rate-over-zero-samples pass) must not read as a green light."""
    total = load_run.total
    p95 = total_threshold(ops, "p", 95.0)
    rate = total_threshold(ops, "rate")
    figures.record("requests", total.count, budget=min_requests, higher_is_better=True)
    figures.record("rps", round(total.rps, 2), unit=" req/s")
    if total.count:
        figures.record(
            "p95_ms", total.percentile_ms(95), unit=" ms", budget=p95.value if p95 else None, warn_ratio=0.8
        )
        figures.record("p99_ms", total.percentile_ms(99), unit=" ms")
        figures.record("error_rate", round(total.fail_ratio, 6), budget=rate.value if rate else None)
    figures.summary_html(summary_fragment(load_run))
    report_extra.text("locust output (tail)", load_run.log_tail)
    by_name = ", ".join(f"{n}={s.count}" for n, s in load_run.endpoints.items())
    assert total.count >= min_requests, (
        f"load sent {total.count} requests, fewer than perf.min_requests = {min_requests}: "
        f"no threshold can be trusted on so few samples\n"
        f"{_failure_context(load_run, 'total')}\n"
        f"  requests by name: {by_name or 'none'}\n"
        f"  what to do: check the locustfile reaches the target (locust.log in the raw output), "
        f"or raise --perf-users/--perf-duration"
    )


def test_threshold_holds(threshold: Threshold | BadThreshold, load_run: LoadResult, report_extra) -> None:
    """Each k6-style threshold (`p(95)<1000`, `rate<0.01`) holds on the measured run."""
    if isinstance(threshold, BadThreshold):
        pytest.fail(threshold.error, pytrace=False)
    verdict = evaluate(threshold, load_run.endpoint(threshold.scope))
    report_extra.text("verdict", verdict.reason)
    assert verdict.passed, f"{verdict.reason}\n{_failure_context(load_run, threshold.scope)}"


@pytest.mark.mutating
def test_mixed_traffic_holds_thresholds(
    ops: OpsSession, mixed_load_run: LoadResult, figures, report_extra
) -> None:
    """With writes in the mix (create, ingest, delete) the same thresholds still hold: reads
    that are fast only while nothing writes are not a release signal."""
    figures.summary_html(summary_fragment(mixed_load_run, "Performance, mixed read/write load (locust)"))
    verdicts = [
        evaluate(t, mixed_load_run.endpoint(t.scope))
        for t in profile_thresholds(ops)
        if isinstance(t, Threshold)
    ]
    report_extra.text("verdicts", "\n".join(v.reason for v in verdicts))
    broken = [v.reason for v in verdicts if not v.passed]
    assert not broken, "\n".join(broken) + "\n" + _failure_context(mixed_load_run, "total")
