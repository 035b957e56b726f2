"""The performance gate against the real reference service, with real locust runs.

Each run is short (8 s of load) but sends well over perf.min_requests, so the verdicts are
the gate's real ones, not the count guard's. Budget for the whole file: about 2.5 minutes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.gaterun import REPO_ROOT

pytestmark = pytest.mark.timeout(300)

LOAD = ("-m", "perf", "-k", "not mixed", "--perf-duration", "8")
# Only this gate's suite: other gates' checks may carry the perf marker too (online migration).
PERF = ("suites/performance",)


def test_healthy_service_passes_every_default_threshold(gates) -> None:
    run = gates(*LOAD, paths=PERF)
    run.assert_all_passed()
    assert "suites/performance/test_load_thresholds.py::test_threshold_holds[total p(95)<1000]" in run.passed
    assert "suites/performance/test_load_thresholds.py::test_threshold_holds[total rate<0.01]" in run.passed
    figures, budgets = run.summary["figures"], run.summary["budgets"]
    assert figures["requests"] >= 100, figures
    assert {"p95_ms", "p99_ms", "error_rate", "rps"} <= set(figures), figures
    assert budgets["p95_ms"] == 1000.0 and budgets["error_rate"] == 0.01 and figures["error_rate"] == 0.0
    raw = run.run_dir / "locust"
    assert (raw / "locust.json").is_file() and (raw / "locust_stats_history.csv").is_file()
    report = (run.run_dir / "report.html").read_text()
    assert "<svg" in report and "GET /api/items/{id}" in report


@pytest.mark.parametrize(
    ("faults", "extra", "broken", "message"),
    [
        # 1.5 s per request: 40 users still send > 100 requests in 8 s, so only p95 is broken.
        (
            "latency_ms=1500",
            ("--perf-users", "40", "--perf-spawn-rate", "40"),
            "total p(95)<1000",
            r"measured 1[5-9]\d\d ms",
        ),
        # 5 % of /api/ requests answer 500 (health probes never): well over 1 % of all requests.
        (
            "error_rate=0.05",
            (),
            "total rate<0.01",
            r"measured 0\.0[2-9]\d* \([\d.]+%\) \d+ of \d+ requests failed",
        ),
    ],
)
def test_fault_breaks_exactly_its_threshold(
    gates, faults: str, extra: tuple[str, ...], broken: str, message: str
) -> None:
    run = gates(*LOAD, *extra, faults=faults, paths=PERF)
    run.assert_only_failed(f"test_threshold_holds[{broken}]")
    text = run.message(f"[{broken}]")
    assert re.search(message, text) and "BROKEN" in text and "what to do" in text, text


def test_load_that_never_reaches_the_service_fails_the_count_guard(gates, tmp_path: Path) -> None:
    """No vacuous pass: no requests fails the guard, and every threshold says 'no samples'.

    The same profile proves the query benchmarks: a slow query breaks its budget, a write is
    refused by the read-only transaction, a fast one passes.
    """
    profile = tmp_path / "never.toml"
    profile.write_text(
        'extends = "sample"\n'
        "[perf]\n"
        'locustfile = "tests/data/locust_never_reaches.py"\n'
        "[[perf.queries]]\n"
        'name = "items page"\nsql = "SELECT id, name FROM items ORDER BY id LIMIT 50"\nruns = 5\n'
        "[[perf.queries]]\n"
        'name = "slow report"\nsql = "SELECT pg_sleep(0.3)"\nruns = 3\n'
        "[[perf.queries]]\n"
        'name = "sneaky write"\nsql = "DELETE FROM items"\nruns = 1\n'
    )
    run = gates(*LOAD[:4], "--perf-duration", "4", "--target", str(profile), paths=PERF)
    run.assert_only_failed(
        "test_enough_requests_for_a_verdict",
        "test_threshold_holds[total p(95)<1000]",
        "test_threshold_holds[total rate<0.01]",
        "test_query_within_budget[slow report]",
        "test_query_within_budget[sneaky write]",
    )
    assert "test_query_within_budget[items page]" in " ".join(run.passed)
    guard = run.message("test_enough_requests_for_a_verdict")
    assert "load sent 0 requests, fewer than perf.min_requests = 100" in guard, guard
    assert "no samples" in run.message("[total rate<0.01]")
    slow = run.message("[slow report]")
    assert "expected: mean <= 250 ms and p95 <= 400 ms" in slow and "mean 3" in slow, slow
    assert "read-only transaction" in run.message("[sneaky write]")


def test_perf_processes_runs_locust_distributed(gates) -> None:
    run = gates(*LOAD, "--perf-processes", "2", paths=PERF)
    run.assert_all_passed()
    side = json.loads((run.run_dir / "locust" / "opsverify.json").read_text())
    assert side["distributed"] is True and side["workers"] == 2, side
    assert run.summary["figures"]["requests"] >= 100
    assert "--processes 2" in (run.run_dir / "locust" / "command.txt").read_text()


def test_locustfiles_are_where_the_profile_says() -> None:
    assert (REPO_ROOT / "locustfiles" / "smoke.py").is_file() and (
        REPO_ROOT / "locustfiles" / "mixed.py"
    ).is_file()
