"""The pipe end to end: providers bring up real servers, the reference service runs, the smoke
gate passes when healthy and fails on its fault, and every run leaves a report."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from opsverify.config import REPO_ROOT
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
    assert summary["target"] == "reference"
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


def _imports_pytest(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pytest" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pytest":
            return True
    return False


def test_only_the_plugin_package_imports_pytest() -> None:
    """The engine is plain Python: a suite, a bench or another tool can use it without pytest."""
    engine = REPO_ROOT / "opsverify"
    plugin = engine / "plugin"
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted(engine.rglob("*.py"))
        if not path.is_relative_to(plugin) and _imports_pytest(path)
    ]
    assert not offenders, f"only opsverify/plugin/ may import pytest; also imported in: {', '.join(offenders)}"
    assert all(_imports_pytest(p) for p in [plugin / "hooks.py"]), "the self-test must see the plugin's import"
