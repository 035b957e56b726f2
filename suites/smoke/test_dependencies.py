"""The service's dependencies answer, the schema is at head, and connections have headroom."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsverify.redact import redact
from opsverify.session import OpsSession
from opsverify.smoke import deps

pytestmark = pytest.mark.smoke
TIMEOUT_S = 5.0


def test_postgres_answers(target_db_url: str, report_extra) -> None:
    """Every runbook's first move when the API 5xx's: `psql -c "SELECT 1"`."""
    result = deps.postgres_select_one(target_db_url, timeout_s=TIMEOUT_S)
    assert result.ok, (
        f"expected SELECT 1 to answer within {TIMEOUT_S:g} s on {redact(target_db_url)}, got: "
        f"{result.describe()} "
        f"— check `pg_isready`, the database logs and disk space (loyalty runbook: БД недоступна)"
    )


def test_redis_answers(target_redis_url: str) -> None:
    """Loyalty runbook: without Redis caches, limits and queues degrade."""
    result = deps.redis_ping(target_redis_url, timeout_s=TIMEOUT_S)
    assert result.ok, (
        f"expected PONG within {TIMEOUT_S:g} s from {redact(target_redis_url)}, got: {result.describe()} "
        f"— restore the Redis container and check REDIS_URL"
    )


@pytest.mark.migration
def test_schema_at_migration_head(target_db_url: str, target_alembic_ini: Path, report_extra) -> None:
    """Office runbook: `alembic upgrade head` before traffic; `alembic current` must equal head.

    The one "database at head" check: it runs under `-m smoke` and under `-m migration`.
    """
    state = deps.schema_state(target_db_url, target_alembic_ini, timeout_s=TIMEOUT_S)
    report_extra.text(
        "revisions", f"current: {state.current}\nheads: {state.heads}\ntree: {target_alembic_ini}"
    )
    assert state.at_head, (
        f"expected alembic_version = heads {list(state.heads)} of {target_alembic_ini}, got "
        f"{state.error or list(state.current)} on {redact(target_db_url)} — run `alembic upgrade head` "
        f"(office runbook, before enabling traffic)"
    )


def test_db_connections_within_budget(ops: OpsSession, target_db_url: str, figures) -> None:
    """Inventory runbook: database connections above 80 % of the pool need investigating."""
    ratio = ops.profile.database.max_connections_ratio
    usage = deps.connection_usage(target_db_url, ratio, timeout_s=TIMEOUT_S)
    assert usage.error is None, (
        f"expected to read pg_stat_activity on {redact(target_db_url)}, got: {usage.error}"
    )
    figures.record("db.connections_in_use", usage.in_use, unit=" conn", budget=usage.budget)
    assert usage.within_budget, (
        f"expected fewer than {usage.budget:.0f} connections ({ratio:.0%} of max_connections "
        f"{usage.max_connections}), got {usage.in_use} (by state: {usage.by_state}) — look for leaked or "
        f"idle "
        f"connections, then raise the pool or max_connections (inventory runbook)"
    )
