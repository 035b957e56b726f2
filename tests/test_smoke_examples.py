"""Every example profile's smoke gate, green against the reference service (which serves the union
of their paths), read-only as promised, and protected metrics refused without the token.

The reference services here run on a throwaway database of the shared servers; the profiles reach
their database and Redis through the env vars they name. Budget: ~35 s (two services, six gate runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsverify.reference import ReferenceService, migrate_and_seed, running_reference_service
from opsverify.services import PostgresServer, RedisServer
from tests.test_smoke_gate import assert_no_secret

METRICS_TOKEN = "opsv-known-loyalty-metrics-token-5e6f7a8b9c"
JWT_SECRET = "opsv-known-ingest-jwt-secret-1a2b3c4d5e6f7a8b9c0d"
REFERENCE_ALEMBIC_INI = "reference_service/alembic.ini"
EXAMPLES = ["office", "loyalty", "inventory", "ingest", "field_service"]


@pytest.fixture(scope="module")
def example_database(shared_servers: tuple[PostgresServer, RedisServer]) -> Iterator[str]:
    pg, _ = shared_servers
    with pg.throwaway_database() as url:
        migrate_and_seed(url)
        yield url


@pytest.fixture(scope="module")
def services(
    shared_servers: tuple[PostgresServer, RedisServer],
    example_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ReferenceService]]:
    """An open one (metrics without token) and one that demands the loyalty token."""
    _, rd = shared_servers
    logs = tmp_path_factory.mktemp("example-services")
    common = {"database_url": example_database, "redis_url": rd.url()}
    with (
        running_reference_service(
            **common, redis_prefix=f"{rd.prefix}ex-open:", log_path=logs / "open.log"
        ) as open_,
        running_reference_service(
            **common,
            redis_prefix=f"{rd.prefix}ex-token:",
            log_path=logs / "token.log",
            env={"SAMPLE_METRICS_TOKEN": METRICS_TOKEN},
        ) as tokened,
    ):
        yield {"open": open_, "token": tokened}


def _env(name: str, database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    schedule = tmp_path / "secrets_rotation_schedule.yaml"
    schedule.write_text(
        f"secrets:\n  - name: JWT_SECRET\n    due: {dt.date.today() + dt.timedelta(days=60)}\n"
    )
    return {
        # Every URL variable any example names, pointed at the reference service's own servers.
        "OFFICE_DATABASE_URL": database_url,
        "OFFICE_REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INVENTORY_DATABASE_URL": database_url,
        "RINGO_DATABASE_URL": database_url,
        "METRICS_TOKEN": METRICS_TOKEN,
        "JWT_SECRET": JWT_SECRET,
        "API_KEY": "opsv-known-api-key-42",
        "POSTGRES_PASSWORD": "opsv-known-pg-password-42",
        "OPS_ROTATION_SCHEDULE": str(schedule),
    }


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_profile_smoke_is_green_and_read_only(
    gates,
    services,
    example_database,
    shared_servers,
    tmp_path: Path,
    name: str,  # type: ignore[no-untyped-def]
) -> None:
    service = services["token" if name == "loyalty" else "open"]
    seen_before = len(service.access_log())
    run = gates(
        "-m",
        "smoke",
        "--target",
        f"examples/{name}",
        "--base-url",
        service.base_url,
        "--alembic-ini",
        REFERENCE_ALEMBIC_INI,
        env=_env(name, example_database, shared_servers[1].url(), tmp_path),
    )
    run.assert_all_passed()
    assert run.summary["result"] == "OK", run.summary
    # The dependency checks ran (the env vars were set): Postgres at least answered for every example.
    assert any("test_postgres_answers" in t for t in run.passed), run.outcomes
    requests = service.access_log()[seen_before:]
    assert requests, "the smoke gate sent nothing to the service"
    writes = [
        f"{r.get('method')} {r.get('path')}" for r in requests if r.get("method") not in ("GET", "HEAD")
    ]
    assert not writes, f"the smoke gate must be read-only, but sent: {writes}"
    assert_no_secret(run, [METRICS_TOKEN, JWT_SECRET, "opsv-known-pg-password-42"])


def test_protected_metrics_fail_when_the_service_serves_them_without_token(
    gates,
    services,
    example_database,
    shared_servers,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Loyalty configures a token; a service that answers the scrape without it fails exactly that check."""
    run = gates(
        "-m",
        "smoke",
        "-k",
        "metrics",
        "--target",
        "examples/loyalty",
        "--base-url",
        services["open"].base_url,
        env=_env("loyalty", example_database, shared_servers[1].url(), tmp_path),
    )
    run.assert_only_failed("test_metrics_refused_without_token")
    message = run.message("test_metrics_refused_without_token")
    assert (
        "expected 401 or 403 for a scrape without X-Metrics-Token, got GET" in message and "-> 200" in message
    )
    assert_no_secret(run, [METRICS_TOKEN])


# --- dependency checks: what fails when Postgres/Redis are gone, the schema is behind, or the
# connection budget is spent. Only the dependency checks run (-k), so no service is needed.


def _deps_profile(tmp_path: Path, ratio: float) -> Path:
    path = tmp_path / "inventory_deps.toml"
    path.write_text(
        'extends = "examples/inventory"\n[database]\nurl_env = "OPSV_T_DB_URL"\n'
        f'max_connections_ratio = {ratio}\n[redis]\nurl_env = "OPSV_T_REDIS_URL"\n'
    )
    return path


DEPS = "postgres_answers or redis_answers or schema_at or connections_within"


def test_unreachable_dependencies_fail_their_checks(gates, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = gates(
        "-m",
        "smoke",
        "-k",
        DEPS,
        "--target",
        str(_deps_profile(tmp_path, 0.8)),
        "--base-url",
        "http://127.0.0.1:9",
        "--alembic-ini",
        REFERENCE_ALEMBIC_INI,
        env={
            "OPSV_T_DB_URL": "postgresql://ops:pw-not-shown@127.0.0.1:1/inventory",
            "OPSV_T_REDIS_URL": "redis://127.0.0.1:1/0",
        },
    )
    run.assert_only_failed(
        "test_postgres_answers",
        "test_redis_answers",
        "test_schema_at_migration_head",
        "test_db_connections_within_budget",
    )
    message = run.message("test_postgres_answers")
    assert (
        "expected SELECT 1 to answer within 5 s on postgresql://ops:***@127.0.0.1:1/inventory" in message
    ), message
    assert "pg_isready" in message
    assert "expected PONG within 5 s from redis://127.0.0.1:1/0" in run.message("test_redis_answers")
    assert_no_secret(run, ["pw-not-shown"])


def test_schema_behind_and_connections_over_budget_fail(gates, shared_servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pg, rd = shared_servers
    with pg.throwaway_database() as url:
        migrate_and_seed(url, rows=0, revision="5a0e0003")
        run = gates(
            "-m",
            "smoke",
            "-k",
            DEPS,
            "--target",
            str(_deps_profile(tmp_path, 0.000001)),
            "--base-url",
            "http://127.0.0.1:9",
            "--alembic-ini",
            REFERENCE_ALEMBIC_INI,
            env={"OPSV_T_DB_URL": url, "OPSV_T_REDIS_URL": rd.url()},
        )
    run.assert_only_failed("test_schema_at_migration_head", "test_db_connections_within_budget")
    schema = run.message("test_schema_at_migration_head")
    assert "expected alembic_version = heads ['5a0e0006" in schema and "got ['5a0e0003" in schema, schema
    assert "run `alembic upgrade head`" in schema
    assert "expected fewer than 0 connections (0% of max_connections" in run.message("connections_within")
