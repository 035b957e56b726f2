"""Ctrl-C or SIGTERM at any phase leaves nothing behind: no processes, containers or databases.

Each run is tagged with a unique environment variable that every child inherits (pg_ctl,
redis-server, uvicorn, locust), so the process table can be searched for what the run started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from opsverify.services import docker_answers

REPO = Path(__file__).resolve().parent.parent


def tagged_processes(tag: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if f"OPS_RUN_TAG={tag}".encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
        except OSError:
            continue
    return found


def own_containers() -> set[str]:
    if not docker_answers():
        return set()
    out = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, timeout=30).stdout
    return set(out.split())


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def start_gates(tmp_path: Path, tag: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    child_env = {**os.environ, "OPS_RUN_TAG": tag, "SAMPLE_FAULTS": "ready=503", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites", "-m", "smoke", "-k", "ready", "--report-dir", str(tmp_path), *args],
        cwd=REPO,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def interrupt(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"the run did not stop within 90 s of signal {sig}:\n{out[-2000:]}")
    return out


def service_log_exists(report_dir: Path) -> bool:
    return any(report_dir.glob("*/sample_service.log"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_while_service_runs_leaves_no_process_or_database(
    tmp_path: Path, sig: int, external_env: dict[str, str], shared_servers
) -> None:
    pg, _ = shared_servers
    databases_before = set(pg.list_own_databases())
    tag = uuid.uuid4().hex
    proc = start_gates(tmp_path, tag, env=external_env)
    # The readiness poll (ready=503) keeps the run busy with the reference service up.
    assert wait_for(lambda: service_log_exists(tmp_path), 60), "reference service never started"
    time.sleep(1.5)
    assert tagged_processes(tag), "expected the run's service to be running before the signal"
    out = interrupt(proc, sig)
    assert proc.returncode in (1, 2), out[-2000:]
    assert "Traceback" not in out
    assert wait_for(lambda: not tagged_processes(tag), 15), f"orphans: {tagged_processes(tag)}"
    assert set(pg.list_own_databases()) == databases_before
    # The interrupted run still leaves its report.
    assert (tmp_path / "latest" / "summary.json").is_file()


def test_interrupt_during_local_server_start_leaves_no_server(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    proc = start_gates(tmp_path, tag, "--services", "local", env={"OPS_SERVICES": ""})
    assert wait_for(lambda: any("postgres" in p or "pg_ctl" in p or "initdb" in p for p in tagged_processes(tag)), 60)
    out = interrupt(proc, signal.SIGINT)
    assert wait_for(lambda: not tagged_processes(tag), 15), f"orphans: {tagged_processes(tag)}\n{out[-1500:]}"


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers here")
def test_interrupt_during_container_start_leaves_no_container(tmp_path: Path) -> None:
    before = own_containers()
    tag = uuid.uuid4().hex
    proc = start_gates(tmp_path, tag, "--services", "containers", env={"OPS_SERVICES": ""})
    assert wait_for(lambda: own_containers() - before, 60), "no container was started"
    out = interrupt(proc, signal.SIGINT)
    assert wait_for(lambda: not (own_containers() - before), 30), (
        f"containers left: {own_containers() - before}\n{out[-1500:]}"
    )
    assert wait_for(lambda: not tagged_processes(tag), 15), f"orphans: {tagged_processes(tag)}"


def _start(tmp_path: Path, tag: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites", "--report-dir", str(tmp_path), *args],
        cwd=REPO,
        env={**os.environ, "OPS_RUN_TAG": tag, "SAMPLE_FAULTS": "", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_interrupt_during_a_locust_run_leaves_no_locust(tmp_path: Path, external_env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex
    proc = _start(tmp_path, tag, "-m", "perf", "-k", "threshold", "--perf-duration", "60", env=external_env)
    assert wait_for(lambda: any("-m locust" in p for p in tagged_processes(tag)), 90), "locust never started"
    time.sleep(1.0)
    out = interrupt(proc, signal.SIGINT)
    assert "Traceback" not in out
    assert wait_for(lambda: not tagged_processes(tag), 20), f"orphans: {tagged_processes(tag)}"


def test_interrupt_during_a_restore_leaves_no_process_or_database(
    tmp_path: Path, external_env: dict[str, str], shared_servers
) -> None:
    pg, _ = shared_servers
    databases_before = set(pg.list_own_databases())
    tag = uuid.uuid4().hex
    proc = _start(tmp_path, tag, "-m", "dr", "-k", "not redis", "--dr-rows", "400000", env=external_env)
    assert wait_for(lambda: any("pg_restore" in p for p in tagged_processes(tag)), 180), "no restore started"
    out = interrupt(proc, signal.SIGINT)
    assert "Traceback" not in out
    assert wait_for(lambda: not tagged_processes(tag), 20), f"orphans: {tagged_processes(tag)}"
    assert wait_for(lambda: set(pg.list_own_databases()) == databases_before, 20), (
        f"databases left: {set(pg.list_own_databases()) - databases_before}"
    )
