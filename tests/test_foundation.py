"""The pipe end to end: providers bring up real servers, the reference service runs, the smoke
gate passes when healthy and fails on its fault, and every run leaves a report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from opsverify.services import docker_answers
from tests.gaterun import GateRun, run_gates

ENDPOINTS = "test_endpoint_answers_within_budget"


def _smoke(tmp_path: Path, *args: str, env: dict[str, str] | None = None, faults: str = "") -> GateRun:
    return run_gates("-m", "smoke", "-k", "endpoint or ready", *args, report_dir=tmp_path, env=env, faults=faults)


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers here (containers provider needs one)")
def test_smoke_gate_on_containers(tmp_path: Path) -> None:
    run = _smoke(tmp_path, "--services", "containers")
    run.assert_all_passed()
    assert run.summary["provider"] == "containers"
    assert run.summary["environment"]["postgres_image"] == os.environ.get("OPS_POSTGRES_IMAGE", "postgres:16")


def test_smoke_gate_on_local_servers(tmp_path: Path) -> None:
    run = _smoke(tmp_path, "--services", "local")
    run.assert_all_passed()
    assert run.summary["provider"] == "local"


def test_smoke_gate_on_external_servers(tmp_path: Path, external_env: dict[str, str], shared_servers) -> None:
    pg, _ = shared_servers
    before = set(pg.list_own_databases())
    run = _smoke(tmp_path, "--services", "external", env=external_env)
    run.assert_all_passed()
    assert run.summary["provider"] == "external"
    # The external server keeps only what was there before: the run dropped its own databases.
    assert set(pg.list_own_databases()) == before


def test_health_fault_fails_exactly_the_endpoint_checks(gates) -> None:
    run = gates("-m", "smoke", "-k", "endpoint or ready", faults="health=503")
    run.assert_only_failed(f"{ENDPOINTS}[GET /healthz]", f"{ENDPOINTS}[GET /health/live]")
    message = run.message(f"{ENDPOINTS}[GET /healthz]")
    assert "expected 200 within 500 ms, got GET http://127.0.0.1:" in message
    assert "-> 503 in" in message
    assert run.returncode == 1
    assert run.summary["result"] == "FAIL"


def test_every_run_writes_report_summary_and_junit(gates) -> None:
    run = gates("-m", "smoke", "-k", "endpoint or ready")
    run.assert_all_passed()
    summary = run.summary
    assert summary["result"] == "OK"
    assert summary["target"] == "sample"
    assert summary["gates"]["smoke"]["passed"] == len(run.passed) > 0
    for name in ("report.html", "junit.xml", "summary.json", "sample_service.log"):
        assert (run.run_dir / name).is_file(), name
    assert set(summary) >= {"result", "target", "provider", "started_at", "duration_s", "gates", "figures"}
    history = (run.report_dir / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["run_id"] == summary["run_id"]


def test_nothing_selected_exits_5_and_still_reports(gates) -> None:
    run = gates("-m", "smoke and integration and dr")
    assert run.returncode == 5
    assert run.summary["result"] == "OK"
