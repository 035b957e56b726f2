"""Alembic environment shared by the self-test trees of the migration gate (their alembic.ini points here).

Where the database comes from, in order: config.attributes["connection"] (a live SQLAlchemy
Connection, what the gate passes in-process; pytest-alembic passes an Engine there),
sqlalchemy.url, then $DATABASE_URL.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

config = context.config
target_metadata = None


def database_url() -> str:
    url = (config.get_main_option("sqlalchemy.url") or "").strip() or os.environ.get("DATABASE_URL", "")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def run_offline() -> None:
    context.configure(
        url=database_url() or "postgresql+psycopg://",
        dialect_name="postgresql",
        literal_binds=True,
        transaction_per_migration=True,
    )
    context.execute("SET lock_timeout = '5s'")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        run(given)
        return
    engine = given if given is not None else create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run(connection)
            connection.commit()
    finally:
        if given is None:
            engine.dispose()


def run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
