"""The performance gate against the real reference service, with real locust runs.

Each run is short (8 s of load) but sends well over perf.min_requests, so the verdicts are
the gate's real ones, not the count guard's. Budget for the whole file: about 2.5 minutes.
"""

from __future__ import annotations

import json

import pytest

from tests.gaterun import REPO_ROOT

pytestmark = pytest.mark.timeout(300)

LOAD = ("-m", "perf", "-k", "not mixed", "--perf-duration", "8")
# Only this gate's suite: other gates' checks may carry the perf marker too (online migration).
PERF = ("suites/perf",)


def test_healthy_service_passes_every_default_threshold(gates) -> None:
    run = gates(*LOAD, paths=PERF)
    run.assert_all_passed()
    assert "suites/perf/test_load_thresholds.py::test_threshold_holds[total p(95)<1000]" in run.passed
    assert "suites/perf/test_load_thresholds.py::test_threshold_holds[total rate<0.01]" in run.passed
    figures, budgets = run.summary["figures"], run.summary["budgets"]
    assert figures["requests"] >= 100, figures
    assert {"p95_ms", "p99_ms", "error_rate", "rps"} <= set(figures), figures
    assert budgets["p95_ms"] == 1000.0 and budgets["error_rate"] == 0.01 and figures["error_rate"] == 0.0
    raw = run.run_dir / "locust"
    assert (raw / "locust.json").is_file() and (raw / "locust_stats_history.csv").is_file()
    report = (run.run_dir / "report.html").read_text()
    assert "<svg" in report and "GET /api/items/{id}" in report


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
