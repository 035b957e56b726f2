"""The integration gate, run for real: each fault fails exactly the flows that own it, the modes are
proven in both directions, and a non-sample profile without --allow-mutations sends nothing but GETs.

Known secrets are set in every run and scanned for afterwards (see tests/test_smoke_gate.py).
Budget: ~110 s on 2 cores (one gate run per fault; the stuck outbox and down dependencies use the
short-wait profile tests/data/gates/sample_quick.toml).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opsverify.reference import ReferenceService, migrate_and_seed, running_reference_service
from opsverify.services import PostgresServer, RedisServer
from tests.test_smoke_gate import SMOKE_AND_INTEGRATION, run_with_secrets

ENDPOINT = "test_endpoint_answers_within_budget"
READY_CHECKS = ("test_ready_within_budget", f"{ENDPOINT}[GET /health/ready]", f"{ENDPOINT}[GET /api/health]")

@pytest.mark.parametrize(
    ("mode", "faults", "failing", "message"),
    [
        pytest.param("maintenance", "", (), "", id="maintenance-healthy"),
        pytest.param("read-only", "", (), "", id="read-only-healthy"),
    ],
)
def test_expected_mode_is_enforced(
    gates, mode: str, faults: str, failing: tuple[str, ...], message: str
) -> None:  # type: ignore[no-untyped-def]
    run = run_with_secrets(gates, *SMOKE_AND_INTEGRATION, "--expect-mode", mode, faults=faults)
    if not failing:
        run.assert_all_passed()
        mode_tests = [t for t in run.passed if "test_modes.py" in t]
        assert len(mode_tests) == 2, f"expected both {mode} checks to run and pass: {run.outcomes}"
        return
    run.assert_only_failed(*failing)
    assert message in run.message(failing[0]), run.message(failing[0])


# --- a non-sample profile, no --allow-mutations: the service's own access log is the proof ---------


@pytest.fixture
def foreign_service(
    shared_servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> Iterator[ReferenceService]:
    """A reference service the gate does not own, on a throwaway database of the shared servers."""
    pg, rd = shared_servers
    with pg.throwaway_database() as url:
        migrate_and_seed(url)
        with running_reference_service(
            database_url=url,
            redis_url=rd.url(),
            redis_prefix=f"{rd.prefix}foreign:",
            log_path=tmp_path / "svc.log",
        ) as service:
            yield service


def test_integration_without_allow_mutations_sends_only_gets(
    gates, foreign_service: ReferenceService
) -> None:  # type: ignore[no-untyped-def]
    run = gates("-m", "integration", "--target", "examples/inventory", "--base-url", foreign_service.base_url)
    assert run.returncode == 0, run.stdout[-3000:]
    assert any("test_list_returns_items" in t for t in run.passed), run.outcomes
    refused = [t for t in run.skipped if "test_write_flows.py" in t]
    assert len(refused) == 6, run.outcomes
    assert "refused" in run.message("test_create_read_delete") or "--allow-mutations" in run.message(
        "test_create_read_delete"
    )
    requests = foreign_service.access_log()
    assert any(r.get("path") == "/api/items" for r in requests), "the read flows never reached the service"
    not_get = [f"{r.get('method')} {r.get('path')}" for r in requests if r.get("method") != "GET"]
    assert not not_get, f"integration without --allow-mutations sent non-GET requests: {not_get}"
