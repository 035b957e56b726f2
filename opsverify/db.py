"""PostgreSQL facts every gate reads the same way: the alembic version table, the system schemas."""

from __future__ import annotations

from typing import Any

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
# Schemas a migration, a seed or a restore never owns; `pg\_` escapes LIKE's one-character wildcard.
_SYSTEM_LIKE = ("pg\\_toast%%", "pg\\_temp%%")


def user_schemas_sql(column: str = "n.nspname") -> str:
    """SQL condition keeping user schemas only (`%%`-escaped, as psycopg wants with parameters)."""
    names = ", ".join(f"'{s}'" for s in SYSTEM_SCHEMAS)
    likes = " ".join(f"AND {column} NOT LIKE '{p}'" for p in _SYSTEM_LIKE)
    return f"{column} NOT IN ({names}) {likes}"


def is_system_schema(name: str) -> bool:
    """The Python twin of `user_schemas_sql`, for names already fetched."""
    return name in SYSTEM_SCHEMAS or name.startswith(("pg_toast", "pg_temp"))


def alembic_versions(conn: Any) -> tuple[str, ...] | None:
    """The rows of `alembic_version` (sorted), or None when the table does not exist.

    `conn` is a psycopg connection or an SQLAlchemy Connection (its `exec_driver_sql`), so the
    in-process alembic runs and the plain readers share one query.
    """
    run = getattr(conn, "exec_driver_sql", None) or conn.execute
    exists = run("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    return tuple(str(r[0]) for r in run("SELECT version_num FROM alembic_version ORDER BY 1").fetchall())
