"""Alembic environment for the sample service.

Where the database comes from, in order:
  1. config.attributes["connection"]: a live SQLAlchemy Connection, used as is (test
     harnesses such as pytest-alembic pass one in);
  2. sqlalchemy.url from the ini / Config, when non-empty;
  3. $DATABASE_URL (the service's own variable), defaulting like the service does.
Plain postgresql:// URLs are pointed at the psycopg 3 driver, which is what the service uses.

Kept free of imports from the service package so `alembic -c .../alembic.ini` works without
the repository on sys.path.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

# Same default as reference_service/settings.py.
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/sample"
CONNECT_TIMEOUT_S = 3
# A migration that cannot get its lock within a few seconds should fail and be retried, not
# queue behind a long transaction while every query on the table queues behind it.
LOCK_TIMEOUT = os.environ.get("MIGRATION_LOCK_TIMEOUT", "5s")
STATEMENT_TIMEOUT = os.environ.get("MIGRATION_STATEMENT_TIMEOUT", "10min")

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    # disable_existing_loggers=False: running migrations in-process (tests) must not silence
    # the caller's loggers.
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = None


def sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url() -> str:
    configured = (config.get_main_option("sqlalchemy.url") or "").strip()
    return sqlalchemy_url(configured or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)


def run_migrations_offline() -> None:
    """Emit SQL instead of running it (`alembic upgrade head --sql`); no database needed."""
    context.configure(
        url=database_url(),
        dialect_name="postgresql",
        literal_binds=True,
        transaction_per_migration=True,
        dialect_opts={"paramstyle": "named"},
    )
    # Session-level SETs at the top of the script cover every migration that follows; this is
    # also what squawk's require-lock-timeout / require-statement-timeout look for.
    context.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    context.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        # The caller owns this connection and its session settings.
        _run(given)
        return
    engine = create_engine(
        database_url(),
        poolclass=pool.NullPool,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "sample_service-migrate",
            "options": f"-c lock_timeout={LOCK_TIMEOUT} -c statement_timeout={STATEMENT_TIMEOUT}",
        },
    )
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
