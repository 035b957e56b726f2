"""Integrity of a restored copy: alembic revision, invariants, freshness, pg_amcheck."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from opsverify.db import alembic_versions, user_schemas_sql
from opsverify.dr.errors import DrError
from opsverify.dr.tools import STDERR_TAIL_LINES, PgClient, progress, run_tool
from opsverify.redact import redact

# Newest-backup integrity: revision, invariants, freshness


def restored_revisions(url: str) -> list[str] | None:
    """alembic_version rows of the restored database; None when it has no such table."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        versions = alembic_versions(conn)
    return None if versions is None else list(versions)


def known_revisions(alembic_ini: Path) -> set[str]:
    from opsverify.migration.tree import MigrationTree

    return set(MigrationTree(alembic_ini).revisions)


def list_tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE " + user_schemas_sql("schemaname") + " ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class InvariantResult:
    query: str
    ok: bool
    detail: str


def check_invariants(url: str, queries: Sequence[str], timeout_s: float = 60) -> list[InvariantResult]:
    """Each query must return one row whose first value is true (e.g. `SELECT count(*) > 0 FROM items`)."""
    results = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SET statement_timeout = '{int(timeout_s * 1000)}'")
        for query in queries:
            try:
                row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            except psycopg.Error as exc:
                results.append(InvariantResult(query, False, f"error: {str(exc).splitlines()[0]}"))
                continue
            ok = bool(row and row[0] is True)
            results.append(InvariantResult(query, ok, f"returned {row[0] if row else 'no row'!r}"))
    return results


def newest_data_at(url: str, query: str) -> dt.datetime | None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    value = row[0] if row else None
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise DrError(f"backup.freshness_query must return one timestamptz, got {type(value).__name__} {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------
# pg_amcheck


@dataclass(frozen=True)
class AmcheckResult:
    ok: bool
    elapsed_s: float
    output: str


def run_amcheck(client: PgClient, url: str, *, jobs: int = 2, timeout_s: float = 3600) -> AmcheckResult:
    """Heap and B-tree checks of every relation (installs the amcheck extension in the throwaway copy)."""
    argv = [*client.argv("pg_amcheck"), "--install-missing", "--jobs", str(max(1, jobs)), "--no-password",
            "--progress", client.dsn(url)]
    with progress("amcheck", lambda: "checking heap and btree pages"):
        result = run_tool(argv, env=client.env(url), timeout_s=timeout_s)
    noise = ("relations (", "pages (")
    findings = [ln for ln in result.stderr_tail if ln.strip() and not any(n in ln for n in noise)]
    return AmcheckResult(result.returncode == 0, result.elapsed_s, redact("\n".join(findings[-STDERR_TAIL_LINES:])))
