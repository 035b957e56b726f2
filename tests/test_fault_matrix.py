"""The fault matrix: every public fault, and exactly the checks that own it fail.

Reference-service faults run every gate that talks to the service (smoke, integration, perf), so
the matrix proves both halves: the owning checks fail with an operator-readable message, and every
other check in those gates passes. Broken migration trees run the migration gate, broken backups
the DR gate, a load that never arrives the perf gate. README's fault table is generated from
nothing: it is checked against FAULT_MATRIX below, so the two cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from opsverify.services import PostgresServer, RedisServer
from tests.gaterun import REPO_ROOT, GateRun
from tests.test_dr_gate import (  # noqa: F401 - fixtures used by the backup faults
    PG_STEPS,
    ROWS,
    _old_backup,
    _other_database,
    _rdb_without_bgsave,
    _restore_drops_rows,
    _sql_gz_error,
    _truncated,
    good_dump,
    pg,
    sample_db,
)
from tests.test_smoke_gate import QUICK, WRONG_TOKEN_HEADER, run_with_secrets

ENDPOINT = "test_endpoint_answers_within_budget"
THRESHOLD = "test_threshold_holds"
SERVICE_GATES = ("-m", "smoke or integration or perf", "-k", "not mixed and not online", "--perf-duration", "6")
PERF_ONLY = ("-m", "perf", "-k", "not mixed and not online", "--perf-duration", "6")
MIGRATION_GATE = ("-m", "migration and not smoke and not perf")
TREES = "tests/data/migrations"


@dataclass(frozen=True)
class Fault:
    """One public fault: what breaks, which gate owns it, which checks must fail (and only those)."""

    name: str
    gate: str
    checks: tuple[str, ...]
    # A phrase of the first check's failure message (a regex when it starts with "re:").
    message: str
    args: tuple[str, ...] = ()
    selection: tuple[str, ...] = SERVICE_GATES
    # Broken backups are built per run: (tmp_path, pg, rd, sample_db, good_dump) -> extra args.
    build: Callable[..., list[str]] | None = None
    # DR: the step whose failure the later steps must name when they skip.
    skipped_because: str | None = None
    # SAMPLE_FAULTS for the run; None: the fault's name is the switch.
    sample_faults: str | None = None

    @property
    def id(self) -> str:
        return self.name


SERVICE_FAULTS = [
    Fault(
        "health=503",
        "smoke, perf",
        (f"{ENDPOINT}[GET /healthz]", f"{ENDPOINT}[GET /health/live]", f"{THRESHOLD}[total rate<0.01]"),
        "expected 200 within 500 ms, got GET",
    ),
    Fault(
        "ready=503",
        "smoke",
        ("test_ready_within_budget", f"{ENDPOINT}[GET /health/ready]", f"{ENDPOINT}[GET /api/health]"),
        "did not answer 200 within 3 s",
        args=("--target", QUICK),
    ),
    Fault(
        "metrics=off",
        "smoke, integration",
        (
            "test_metrics_have_required_families",
            "test_metrics_refused_without_token",
            "test_request_counter_moves",
            "test_outbox_drains",
        ),
        "check the exporter is enabled",
    ),
    Fault(
        "metrics scraped under the wrong token header",
        "smoke, integration",
        ("test_metrics_have_required_families", "test_request_counter_moves", "test_outbox_drains"),
        "refused with the configured token",
        args=("--target", WRONG_TOKEN_HEADER),
        sample_faults="",
    ),
    Fault(
        "latency_ms=1500",
        "smoke, integration, perf",
        (
            f"{ENDPOINT}[GET /healthz]",
            f"{ENDPOINT}[GET /health/live]",
            f"{ENDPOINT}[GET /health/ready]",
            f"{ENDPOINT}[GET /api/health]",
            f"{ENDPOINT}[GET /api/items?limit=5]",
            "test_burst_is_throttled",
            f"{THRESHOLD}[total p(95)<1000]",
        ),
        "(over budget)",
        # 1.5 s a request: 40 users still send well over perf.min_requests, so only p95 breaks.
        args=("--perf-users", "40", "--perf-spawn-rate", "40"),
    ),
    Fault(
        "error_rate=0.05",
        "perf",
        (f"{THRESHOLD}[total rate<0.01]",),
        r"re:measured 0\.0[2-9]\d* \([\d.]+%\) \d+ of \d+ requests failed",
        # Smoke and integration send a handful of API requests each: a 5 % error rate would fail
        # them at random, so this fault is judged where the sample is large enough: the load.
        selection=PERF_ONLY,
    ),
    Fault(
        "request_id=off",
        "smoke",
        ("test_request_id_is_echoed", "test_request_id_is_generated"),
        "X-Request-Id",
    ),
    Fault(
        "size_limit=off",
        "integration",
        ("test_oversized_body_refused",),
        "expected 413 PAYLOAD_TOO_LARGE for a",
    ),
    Fault(
        "rate_limit=off",
        "integration",
        ("test_burst_is_throttled",),
        "expected 429 within a burst of 300",
    ),
    Fault(
        "outbox=stuck",
        "integration",
        ("test_outbox_drains",),
        "expected outbox_pending to reach 0 within 4 s after a create, got ",
        args=("--target", QUICK),
    ),
    Fault(
        "outbox=dead",
        "integration",
        ("test_outbox_drains",),
        "outbox_dead_total",
        args=("--target", QUICK),
    ),
    Fault(
        "db=down",
        "smoke, integration, perf",
        (
            "test_ready_within_budget",
            f"{ENDPOINT}[GET /health/ready]",
            f"{ENDPOINT}[GET /api/health]",
            f"{ENDPOINT}[GET /api/items?limit=5]",
            "test_metrics_have_required_families",
            "test_list_returns_items",
            "test_get_one_item",
            "test_missing_item_is_404",
            "test_create_read_delete",
            "test_second_read_served_from_cache",
            "test_outbox_drains",
            f"{THRESHOLD}[total rate<0.01]",
        ),
        "did not answer 200 within 3 s",
        args=("--target", QUICK),
    ),
    Fault(
        "redis=down",
        "smoke, integration",
        (
            "test_ready_within_budget",
            f"{ENDPOINT}[GET /health/ready]",
            f"{ENDPOINT}[GET /api/health]",
            "test_second_read_served_from_cache",
            "test_burst_is_throttled",
        ),
        "did not answer 200 within 3 s",
        args=("--target", QUICK),
    ),
    Fault(
        "maintenance=ignore",
        "smoke, integration",
        ("test_maintenance_blocks_api", f"{ENDPOINT}[GET /api/items?limit=5]"),
        "expected 503 from /api/items in maintenance mode, got GET",
        args=("--expect-mode", "maintenance"),
    ),
    Fault(
        "readonly=ignore",
        "integration",
        ("test_read_only_refuses_writes",),
        "expected a write refused (403/405/409/423/503) in read-only mode, got POST",
        args=("--expect-mode", "read-only"),
    ),
]

MIGRATION_FAULTS = [
    Fault(
        "tree: two heads",
        "migration",
        ("test_single_head",),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/two_heads/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
    Fault(
        "tree: no-op downgrade",
        "migration",
        ("test_stairway[b2000002-add-accounts-note]",),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/noop_downgrade/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
    Fault(
        "tree: downgrade loses rows",
        "migration",
        ("test_downgrade_keeps_rows",),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/downgrade_loses_rows/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
    Fault(
        "tree: index without CONCURRENTLY",
        "migration",
        ("test_revision_sql_passes_lint[b2000002-index-accounts-created-at]",),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/index_not_concurrent/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
    # squawk finds it statically; on a table holding rows the upgrade itself fails, which the
    # data-safety check proves (a real outage, not a style finding).
    Fault(
        "tree: NOT NULL column without default",
        "migration",
        (
            "test_revision_sql_passes_lint[b2000002-add-accounts-plan]",
            "test_upgrade_keeps_rows[b2000002-add-accounts-plan]",
        ),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/not_null_no_default/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
    # The full downgrade walks through the same revision, so it stops there too.
    Fault(
        "tree: irreversible revision not declared",
        "migration",
        ("test_stairway[b2000002-split-accounts-note]", "test_full_downgrade"),
        "b2000002",
        args=("--alembic-ini", f"{TREES}/irreversible_undeclared/alembic.ini"),
        selection=MIGRATION_GATE,
    ),
]

DR = ("-m", "dr", "--dr-rows", ROWS)
BACKUP_FAULTS = [
    Fault(
        "backup: truncated archive",
        "dr",
        ("test_archive_reads_to_the_end",),
        "truncated or corrupt",
        selection=(*DR, "-k", PG_STEPS),
        build=_truncated,
        skipped_because="archive",
    ),
    Fault(
        "backup: archive of another database",
        "dr",
        ("test_restored_copy_matches_source",),
        "tables missing in restored: public.alembic_version, public.items, public.outbox",
        selection=(*DR, "-k", PG_STEPS),
        build=_other_database,
        skipped_because="integrity",
    ),
    Fault(
        "backup: restore command exits 0 but drops rows",
        "dr",
        ("test_restored_copy_matches_source",),
        "table public.items: source 2000 rows, restored 1715 rows (-285)",
        selection=(*DR, "-k", PG_STEPS),
        build=_restore_drops_rows,
        skipped_because="integrity",
    ),
    Fault(
        "backup: older than RPO",
        "dr",
        ("test_rpo_within_budget",),
        "expected within RPO 60 min",
        selection=(*DR, "-k", PG_STEPS),
        build=_old_backup,
    ),
    Fault(
        "backup: .sql.gz with an SQL error",
        "dr",
        ("test_restore_completes",),
        "ON_ERROR_STOP",
        selection=(*DR, "-k", PG_STEPS),
        build=_sql_gz_error,
        skipped_because="restore",
    ),
    Fault(
        "backup: Redis RDB missing keys",
        "dr",
        ("test_redis_snapshot_restores_every_key",),
        "keys missing in the restored RDB",
        selection=(*DR, "-k", "redis"),
        build=_rdb_without_bgsave,
    ),
]

LOAD_FAULTS = [
    Fault(
        "load: locustfile never reaches the service",
        "perf",
        ("test_enough_requests_for_a_verdict", f"{THRESHOLD}[total p(95)<1000]", f"{THRESHOLD}[total rate<0.01]"),
        "load sent 0 requests, fewer than perf.min_requests = 100",
    ),
    Fault("load: query above its budget", "perf", ("test_query_within_budget[slow report]",), "mean 3"),
    Fault("load: benchmark query that writes", "perf", ("test_query_within_budget[sneaky write]",), "read-only"),
]

FAULT_MATRIX = [*SERVICE_FAULTS, *MIGRATION_FAULTS, *BACKUP_FAULTS, *LOAD_FAULTS]


def assert_fault_owned(run: GateRun, fault: Fault) -> None:
    run.assert_only_failed(*fault.checks)
    message = run.message(fault.checks[0])
    if fault.message.startswith("re:"):
        assert re.search(fault.message[3:], message), message
    else:
        assert fault.message in message, message
    assert "Traceback" not in message
    assert run.summary["result"] == "FAIL"


@pytest.mark.parametrize("fault", SERVICE_FAULTS, ids=lambda f: f.id)
def test_service_fault_fails_exactly_its_checks(gates, fault: Fault) -> None:  # type: ignore[no-untyped-def]
    faults = fault.name if fault.sample_faults is None else fault.sample_faults
    run = run_with_secrets(gates, *fault.selection, *fault.args, faults=faults)
    assert_fault_owned(run, fault)


@pytest.mark.parametrize("fault", MIGRATION_FAULTS, ids=lambda f: f.id)
def test_broken_tree_fails_exactly_its_checks(gates, fault: Fault) -> None:  # type: ignore[no-untyped-def]
    run = gates(*fault.selection, *fault.args)
    assert_fault_owned(run, fault)
    for check in fault.checks:
        assert "b2000002" in run.message(check), f"{check} does not name the revision"


@pytest.mark.parametrize("fault", BACKUP_FAULTS, ids=lambda f: f.id)
def test_broken_backup_fails_exactly_its_step(
    gates,  # type: ignore[no-untyped-def]
    fault: Fault,
    shared_servers: tuple[PostgresServer, RedisServer],
    sample_db: str,  # noqa: F811
    good_dump: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    pg_server, rd = shared_servers
    assert fault.build is not None
    args = fault.build(tmp_path=tmp_path, pg=pg_server, rd=rd, sample_db=sample_db, good_dump=good_dump)
    run = gates(*fault.selection, *args)
    assert_fault_owned(run, fault)
    if fault.skipped_because:
        later = [t for t in run.skipped if f"{fault.skipped_because} step failed" in run.messages.get(t, "")]
        assert later, f"no later step was skipped naming the {fault.skipped_because} step: {run.messages}"


def test_load_faults_fail_exactly_their_checks(gates, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No vacuous pass: no requests fails the guard and every threshold says 'no samples'; a slow
    benchmark query breaks its budget; a writing one is refused by the read-only transaction."""
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
    run = gates(
        "-m", "perf", "-k", "not mixed", "--perf-duration", "4", "--target", str(profile), paths=("suites/perf",)
    )
    run.assert_only_failed(*(check for fault in LOAD_FAULTS for check in fault.checks))
    for fault in LOAD_FAULTS:
        assert fault.message in run.message(fault.checks[0]), run.message(fault.checks[0])
    assert "no samples" in run.message(f"{THRESHOLD}[total rate<0.01]")
    assert "test_query_within_budget[items page]" in " ".join(run.passed)


# --- README's table is checked against the matrix ------------------------------------------------


def readme_fault_table() -> list[tuple[str, str, str]]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- fault-matrix:start -->", 1)[1].split("<!-- fault-matrix:end -->", 1)[0]
    rows = []
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


def matrix_rows() -> list[tuple[str, str, str]]:
    return [(f.name, f.gate, ", ".join(f"`{c}`" for c in f.checks)) for f in FAULT_MATRIX]


def test_readme_fault_table_matches_the_matrix() -> None:
    assert readme_fault_table() == matrix_rows(), (
        "README's fault table drifted from tests/test_fault_matrix.py; regenerate it with\n"
        "  .venv/bin/python -c 'from tests.test_fault_matrix import print_table; print_table()'"
    )


def print_table() -> None:
    print("| fault | gate | failing checks |\n|---|---|---|")
    for name, gate, checks in matrix_rows():
        print(f"| `{name}` | {gate} | {checks} |")
