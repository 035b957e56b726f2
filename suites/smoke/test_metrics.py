"""Metrics: the scrape works, is protected, carries the families alerts use, and is alive."""

from __future__ import annotations

import pytest

from opsverify.session import OpsSession
from opsverify.smoke.metrics import Scrape, is_protected, refused_without_token, scrape, scrape_failure
from opsverify.smoke.probes import HttpProbe
from opsverify.smoke.verdicts import traffic_path
from opsverify.target import Target

pytestmark = pytest.mark.smoke
TRAFFIC_REQUESTS = 3


def _scrape(http: HttpProbe, target: Target, path: str) -> Scrape:
    return scrape(http, path, target.metrics_headers())


def test_metrics_have_required_families(
    ops: OpsSession, http: HttpProbe, target: Target, metrics_path: str, readiness, report_extra
) -> None:
    """Loyalty runbook: alerts read http_requests_total, outbox_dead_total, …; a missing family is a blind
    alert."""
    s = _scrape(http, target, metrics_path)
    report_extra.text("scrape", s.result.exchange(body_limit=2000))
    failure = scrape_failure(s, with_token=bool(target.metrics_headers()))
    assert failure is None, failure
    missing = s.missing(ops.profile.metrics.required)
    assert not missing, (
        f"expected families {ops.profile.metrics.required} in {metrics_path}, missing {missing} "
        f"({s.describe()}; present: {', '.join(sorted(s.families)[:30])}) — the alerts built on them see no "
        f"data"
    )


def test_metrics_refused_without_token(
    ops: OpsSession, http: HttpProbe, target: Target, metrics_path: str, readiness, report_extra
) -> None:
    """Loyalty runbook scrapes with X-Metrics-Token: a scrape without it must be refused, or anyone reads
    them."""
    metrics = ops.profile.metrics
    if not is_protected(metrics.protected, bool(metrics.token)):
        pytest.skip(f"{ops.profile.name}: metrics are not protected (no metrics.token, or protected = false)")
    result = http.get(metrics_path)
    report_extra.text("exchange without token", result.exchange())
    assert refused_without_token(result), (
        f"expected 401 or 403 for a scrape without {metrics.token_header}, got {result.describe()} — "
        f"the metrics endpoint is open to anyone; require the token header"
    )


def test_request_counter_moves(
    ops: OpsSession, http: HttpProbe, target: Target, metrics_path: str, readiness, figures, report_extra
) -> None:
    """A counter frozen while traffic flows means dashboards and error-rate alerts are lying."""
    counter = ops.profile.metrics.request_counter
    path = traffic_path(ops.profile)
    if path is None:
        pytest.skip(f"{ops.profile.name} lists no smoke endpoint to send traffic to")
    before = _scrape(http, target, metrics_path)
    failure = scrape_failure(before, with_token=bool(target.metrics_headers()))
    assert failure is None, failure
    sent = [http.get(path) for _ in range(TRAFFIC_REQUESTS)]
    after = _scrape(http, target, metrics_path)
    failure = scrape_failure(after, with_token=bool(target.metrics_headers()))
    assert failure is None, failure
    # The scrapes count themselves; only the series of other paths prove traffic is seen.
    first = before.counter_sum(counter, exclude_label_value=metrics_path)
    second = after.counter_sum(counter, exclude_label_value=metrics_path)
    report_extra.text("traffic", "\n".join(r.describe() for r in sent))
    assert first is not None and second is not None, (
        f"expected counter {counter} in both scrapes, got {'absent' if first is None else first} then "
        f"{'absent' if second is None else second} — set metrics.request_counter to the service's request "
        f"counter"
    )
    figures.record("metrics.request_counter_delta", second - first, unit=" req")
    assert second > first, (
        f"expected {counter} to grow after {TRAFFIC_REQUESTS} GET {path} ({sent[-1].describe()}), "
        f"got {first:g} before and {second:g} after — the exporter is stuck or counts nothing; restart it"
    )
