"""Real outages, not simulated ones: a target that is down, one that accepts connections and never
answers, and a reference service whose own PostgreSQL or Redis server is stopped mid-life.

The owning checks must fail within their budgets with a message naming the dependency; checks
that do not depend on it still run and report.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsverify.reference import migrate_and_seed, running_reference_service
from opsverify.services import LocalProvider, free_port
from tests.gaterun import run_gates

ENDPOINT = "test_endpoint_answers_within_budget"
SMOKE = ("-m", "smoke", "-k", "ready or endpoint or request_id")


@pytest.fixture
def hung_server() -> Iterator[int]:
    """Accepts TCP connections and never sends a byte back."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def quick_profile(tmp_path: Path, base_url: str, **sections: str) -> Path:
    """A remote-style profile: 3 s readiness budget, the reference service's paths."""
    text = (
        f'description = "outage self-test"\nbase_url = "{base_url}"\n'
        '[smoke]\nready_timeout_s = 3\nready_path = "/health/ready"\n'
        '[[smoke.endpoints]]\npath = "/healthz"\nkind = "live"\nmax_ms = 500\n'
        '[[smoke.endpoints]]\npath = "/health/ready"\nkind = "ready"\nmax_ms = 1000\n'
        '[[smoke.endpoints]]\npath = "/api/items?limit=5"\nmax_ms = 1000\n'
        '[metrics]\npath = "/metrics"\n'
    )
    for name, body in sections.items():
        text += f"[{name}]\n{body}\n"
    path = tmp_path / "outage.toml"
    path.write_text(text)
    return path


def test_target_down_fails_fast_naming_the_connection(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    profile = quick_profile(tmp_path, f"http://127.0.0.1:{port}")
    started = time.monotonic()
    run = run_gates(*SMOKE, "--target", str(profile), report_dir=tmp_path / "r", env={"SAMPLE_FAULTS": ""})
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    run.assert_only_failed("test_ready_within_budget", ENDPOINT, "test_request_id")
    assert "no response (ConnectError" in run.message(f"{ENDPOINT}[GET /healthz]")
    assert elapsed < 60, f"a down target took {elapsed:.0f} s to report"


def test_target_that_never_answers_fails_within_budget(tmp_path: Path, hung_server: int) -> None:
    profile = quick_profile(tmp_path, f"http://127.0.0.1:{hung_server}")
    started = time.monotonic()
    run = run_gates(*SMOKE, "--target", str(profile), report_dir=tmp_path / "r", env={"SAMPLE_FAULTS": ""})
    elapsed = time.monotonic() - started
    run.assert_only_failed("test_ready_within_budget", ENDPOINT, "test_request_id")
    assert "ReadTimeout" in run.message(f"{ENDPOINT}[GET /healthz]")
    # 3 s readiness + 3 endpoints at 2 x their budget (>= 2 s) + request-id probes at the probe timeout.
    assert elapsed < 90, f"a hung target took {elapsed:.0f} s to report"


@pytest.mark.parametrize("stopped", ["postgres", "redis"])
def test_stopped_dependency_fails_its_owners_by_name(tmp_path: Path, stopped: str) -> None:
    provider = LocalProvider()
    pg, rd = provider.start()
    try:
        with pg.throwaway_database() as url:
            migrate_and_seed(url, rows=20)
            with running_reference_service(
                database_url=url, redis_url=rd.url(), log_path=tmp_path / "service.log"
            ) as service:
                # Stop the real server underneath the running service.
                executor = provider._pg_exec if stopped == "postgres" else provider._redis_exec
                executor.stop()  # type: ignore[union-attr]
                profile = quick_profile(
                    tmp_path,
                    service.base_url,
                    database='url_env = "OUTAGE_DATABASE_URL"',
                    redis='url_env = "OUTAGE_REDIS_URL"',
                )
                run = run_gates(
                    "-m",
                    "smoke",
                    "-k",
                    "ready or endpoint or dependencies or request_id",
                    "--target",
                    str(profile),
                    report_dir=tmp_path / "r",
                    env={"SAMPLE_FAULTS": "", "OUTAGE_DATABASE_URL": url, "OUTAGE_REDIS_URL": rd.url()},
                )
    finally:
        provider.stop()
    ready = run.message("test_ready_within_budget")
    assert "/health/ready did not answer 200 within 3 s" in ready
    if stopped == "postgres":
        assert any("postgres" in t.lower() and "dependencies" in t for t in run.failed), run.failed
        assert any(f"{ENDPOINT}[GET /api/items?limit=5]" in t for t in run.failed), run.failed
    else:
        assert any("redis" in t.lower() and "dependencies" in t for t in run.failed), run.failed
    # Liveness and the request-id checks do not depend on the stopped server: they still pass.
    assert f"suites/smoke/test_endpoints.py::{ENDPOINT}[GET /healthz]" in run.passed
    assert any("test_request_id_is_echoed" in t for t in run.passed)
