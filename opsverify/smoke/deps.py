"""Dependency probes: Postgres answers, Redis answers, schema at head, connection headroom.

Each probe opens its own short-lived connection with explicit connect and statement timeouts
and returns a small result; none raises for an outage (an outage is a verdict, not a crash).
Messages never contain a password: URLs go through `redact`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from opsverify.db import alembic_versions
from opsverify.redact import redact

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class DepResult:
    """What one dependency probe saw."""

    what: str
    ok: bool
    elapsed_ms: float
    detail: str = ""

    def describe(self) -> str:
        state = "answered" if self.ok else "did not answer"
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.what} {state} in {self.elapsed_ms:.0f} ms{extra}"


@dataclass(frozen=True)
class SchemaState:
    """The target database's alembic_version against the heads of the migration tree."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    error: str | None = None

    @property
    def at_head(self) -> bool:
        return self.error is None and bool(self.heads) and set(self.current) == set(self.heads)


@dataclass(frozen=True)
class ConnectionUsage:
    in_use: int
    max_connections: int
    ratio_budget: float
    by_state: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def budget(self) -> float:
        return self.max_connections * self.ratio_budget

    @property
    def within_budget(self) -> bool:
        return self.error is None and self.in_use < self.budget


def _connect(url: str, timeout_s: float) -> psycopg.Connection:
    return psycopg.connect(
        url,
        connect_timeout=max(1, int(timeout_s)),
        autocommit=True,
        application_name="opsverify",
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c default_transaction_read_only=on",
    )


def _error_text(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:300]


def postgres_select_one(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> DepResult:
    """`psql -c "SELECT 1"` from the runbooks, with a connect timeout."""
    started = time.perf_counter()
    try:
        with _connect(url, timeout_s) as conn:
            row = conn.execute("SELECT 1").fetchone()
        ok = row is not None and row[0] == 1
        detail = "" if ok else f"SELECT 1 returned {row!r}"
    except (psycopg.Error, OSError) as exc:
        ok, detail = False, _error_text(exc)
    return DepResult("PostgreSQL SELECT 1", ok, (time.perf_counter() - started) * 1000, detail)


def redis_ping(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> DepResult:
    import redis  # here, not at the top: only this probe needs the client library

    started = time.perf_counter()
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        ok = bool(client.ping())
        detail = "" if ok else "PING did not return PONG"
    except (redis.RedisError, OSError) as exc:
        ok, detail = False, _error_text(exc)
    finally:
        client.close()
    return DepResult("Redis PING", ok, (time.perf_counter() - started) * 1000, detail)


def migration_heads(alembic_ini: Path) -> tuple[str, ...]:
    """Heads of the migration tree the profile names (alembic's own ScriptDirectory)."""
    from opsverify.migration.tree import MigrationTree

    return MigrationTree(alembic_ini).heads


def current_revisions(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> tuple[str, ...] | None:
    """Rows of alembic_version, None without the table; raises psycopg.Error for the caller to word."""
    with _connect(url, timeout_s) as conn:
        return alembic_versions(conn)


def schema_state(url: str, alembic_ini: Path, *, timeout_s: float = CONNECT_TIMEOUT_S) -> SchemaState:
    try:
        heads = migration_heads(alembic_ini)
    except Exception as exc:
        return SchemaState((), (), f"cannot read migration tree {alembic_ini}: {_error_text(exc)}")
    try:
        current = current_revisions(url, timeout_s=timeout_s)
    except (psycopg.Error, OSError) as exc:
        return SchemaState((), heads, f"cannot read alembic_version: {_error_text(exc)}")
    if current is None:
        return SchemaState((), heads, "the database has no alembic_version table (never migrated?)")
    return SchemaState(current, heads)


def connection_usage(
    url: str, ratio_budget: float, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> ConnectionUsage:
    """Client connections in use on the whole server against max_connections (pg_stat_activity)."""
    try:
        with _connect(url, timeout_s) as conn:
            max_row = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
            rows = conn.execute(
                "SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' GROUP BY 1"
            ).fetchall()
    except (psycopg.Error, OSError) as exc:
        return ConnectionUsage(0, 0, ratio_budget, error=_error_text(exc))
    by_state = {str(state): int(count) for state, count in rows}
    return ConnectionUsage(sum(by_state.values()), int(max_row[0]) if max_row else 0, ratio_budget, by_state)
