"""Unit tests of the threshold parser/evaluator and of the locust result arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from opsverify.perf import EndpointStats, bucket_ms, histogram_percentile, merge_stats
from opsverify.perf.thresholds import (
    ThresholdSyntaxError,
    abort_reason,
    evaluate,
    parse_threshold,
    parse_thresholds,
)


def stats(
    name: str = "total", times: list[float] | None = None, failures: int = 0, count_5xx: int = 0
) -> EndpointStats:
    times = [10.0] * 100 if times is None else times
    histogram: dict[int, int] = {}
    for t in times:
        histogram[bucket_ms(t)] = histogram.get(bucket_ms(t), 0) + 1
    return EndpointStats(
        name=name,
        count=len(times),
        failures=failures,
        count_5xx=count_5xx,
        total_ms=sum(times),
        min_ms=min(times, default=0.0),
        max_ms=max(times, default=0.0),
        histogram=histogram,
        window_s=10.0,
    )


@pytest.mark.parametrize(
    ("text", "metric", "op", "value", "percentile", "normalised"),
    [
        ("p(95)<1000", "p", "<", 1000.0, 95.0, "p(95)<1000"),
        (" p( 99.9 ) <= 1500 ", "p", "<=", 1500.0, 99.9, "p(99.9)<=1500"),
        ("rate<0.01", "rate", "<", 0.01, None, "rate<0.01"),
        ("rate_5xx<=0.001", "rate_5xx", "<=", 0.001, None, "rate_5xx<=0.001"),
        ("avg<200", "avg", "<", 200.0, None, "avg<200"),
        ("med < 50", "med", "<", 50.0, None, "med<50"),
        ("max<3000", "max", "<", 3000.0, None, "max<3000"),
        ("rps>=20", "rps", ">=", 20.0, None, "rps>=20"),
        ("count>100", "count", ">", 100.0, None, "count>100"),
        ("count==0", "count", "==", 0.0, None, "count==0"),
        ("p(100)<1e4", "p", "<", 10000.0, 100.0, "p(100)<1e4"),
    ],
)
def test_parser_reads_k6_syntax(text, metric, op, value, percentile, normalised) -> None:
    t = parse_threshold("GET /api/items", text)
    assert (t.metric, t.op, t.value, t.percentile, t.text) == (metric, op, value, percentile, normalised)
    assert t.id == f"GET /api/items {normalised}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("p95<1000", "cannot read"),
        ("p(0)<10", "percentile must be in (0, 100]"),
        ("p(101)<10", "percentile must be in (0, 100]"),
        ("rate<1%", "cannot read"),
        ("rate<5", "a rate is a fraction"),
        ("latency<100", "cannot read"),
        ("avg=<100", "cannot read"),
        ("avg<", "cannot read"),
        ("", "cannot read"),
    ],
)
def test_parser_refuses_what_it_cannot_read(text: str, fragment: str) -> None:
    with pytest.raises(ThresholdSyntaxError, match=None) as info:
        parse_threshold("total", text)
    assert fragment in str(info.value) and "perf.thresholds.total" in str(info.value)


def test_parse_thresholds_keeps_profile_order() -> None:
    parsed = parse_thresholds({"total": ["p(95)<1000", "rate<0.01"], "GET /healthz": ["max<500"]})
    assert [t.id for t in parsed] == ["total p(95)<1000", "total rate<0.01", "GET /healthz max<500"]


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("p(95)<1000", True),
        ("p(95)<900", False),
        ("avg<100", False),
        ("avg<110", True),
        ("med<20", True),
        ("max<=1200", True),
        ("max<1200", False),
        ("rate<0.01", False),
        ("rate<0.05", True),
        ("rate_5xx<0.02", True),
        ("rate_5xx<0.01", False),
        ("rps>=10", True),
        ("count>=100", True),
        ("count>100", False),
    ],
)
def test_evaluator_compares_measured_with_budget(text: str, passed: bool) -> None:
    # 90 fast requests and 10 slow ones: p95 is in the slow tail, the median is fast.
    measured = stats(times=[10.0] * 90 + [950.0] * 9 + [1200.0], failures=3, count_5xx=1)
    verdict = evaluate(parse_threshold("total", text), measured)
    assert verdict.passed is passed, verdict.reason
    assert verdict.samples == 100
    if not passed:
        assert "BROKEN" in verdict.reason and "what to do" in verdict.reason


def test_failure_message_names_scope_measured_and_expected() -> None:
    verdict = evaluate(parse_threshold("GET /api/items", "p(95)<800"), stats("GET /api/items", [1240.0] * 50))
    assert not verdict.passed
    assert verdict.reason.startswith("GET /api/items p(95)<800: measured 1200 ms over 50 requests")
    assert "expected: p(95) < 800 ms" in verdict.reason


@pytest.mark.parametrize("text", ["rate<0.01", "p(95)<1000", "count<5", "rate_5xx<0.01", "max<1"])
def test_zero_samples_never_pass(text: str) -> None:
    """grafana/k6#4283: a rate over zero samples passes there; here it fails with the reason."""
    for measured in (None, stats(times=[])):
        verdict = evaluate(parse_threshold("GET /api/items", text), measured)
        assert not verdict.passed and verdict.measured is None
        assert "no samples" in verdict.reason and "received no request" in verdict.reason


def test_abort_reason_waits_for_samples_and_ignores_end_of_run_metrics() -> None:
    thresholds = parse_thresholds({"total": ["p(95)<100", "count>1000", "rps>500"]})
    slow_few = stats(times=[500.0] * 5)
    assert abort_reason(thresholds, {}, slow_few, min_samples=20) is None
    slow_many = stats(times=[500.0] * 40)
    reason = abort_reason(thresholds, {}, slow_many, min_samples=20)
    assert reason is not None and reason.startswith("total p(95)<100 broken while running: 500 ms")
    fast = stats(times=[5.0] * 40)
    assert abort_reason(thresholds, {}, fast, min_samples=20) is None


def test_merge_adds_histograms_like_locusts_aggregated_row() -> None:
    a, b = stats("GET /a", [10.0] * 60), stats("GET /b", [300.0] * 40, failures=4, count_5xx=2)
    total = merge_stats("total", [a, b], window_s=10.0)
    assert (total.count, total.failures, total.count_5xx) == (100, 4, 2)
    assert total.percentile_ms(50) == 10 and total.percentile_ms(95) == 300
    assert total.rps == 10.0 and total.fail_ratio == 0.04 and total.ratio_5xx == 0.02


def test_percentiles_match_locusts_own_implementation() -> None:
    """Same histogram, same answer as locust.stats (run in a subprocess: locust patches gevent)."""
    times = [1.2, 3.0, 7.7, 14.0, 99.0, 147.0, 151.0, 980.0, 1234.0, 3432.0, 58760.0] * 7 + [42.0] * 23
    histogram: dict[int, int] = {}
    for t in times:
        histogram[bucket_ms(t)] = histogram.get(bucket_ms(t), 0) + 1
    percents = [0.5, 0.66, 0.9, 0.95, 0.99, 0.999, 1.0]
    code = (
        "import json,sys\n"
        "from locust.stats import calculate_response_time_percentile as p, bucket_response_time as b\n"
        "h={int(k):v for k,v in json.loads(sys.argv[1]).items()}\n"
        "print(json.dumps({'p':[p(h,int(sys.argv[2]),x) for x in json.loads(sys.argv[3])],"
        "'b':[b(t) for t in json.loads(sys.argv[4])]}))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            json.dumps(histogram),
            str(len(times)),
            json.dumps(percents),
            json.dumps(times),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = json.loads(out)
    assert [histogram_percentile(histogram, len(times), x) for x in percents] == theirs["p"]
    assert [bucket_ms(t) for t in times] == theirs["b"]
