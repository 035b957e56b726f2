"""CLI: serve | migrate | seed. Start-up failures print one line to stderr, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys

PROG = "python -m reference_service"
EXIT_RUNTIME_ERROR = 1
EXIT_BAD_CONFIG = 2


def _fail(message: str, code: int) -> int:
    print(f"sample_service: {message}", file=sys.stderr)
    return code


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the HTTP service (default)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    migrate = commands.add_parser("migrate", help="alembic upgrade against $DATABASE_URL")
    migrate.add_argument("--revision", default="head")
    seed = commands.add_parser("seed", help="bulk-insert realistic items")
    seed.add_argument("--rows", type=_positive_int, default=1000)
    return parser


def _database_url() -> str:
    from .settings import DEFAULT_DATABASE_URL

    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def _serve(host: str, port: int) -> int:
    from .app import serve
    from .settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(f"refusing to start: {exc}", EXIT_BAD_CONFIG)
    serve(settings, host=host, port=port)
    return 0


def _migrate(revision: str) -> int:
    from .migrate import DatabaseUnreachable, first_line, upgrade

    try:
        upgrade(_database_url(), revision)
    except DatabaseUnreachable as exc:
        return _fail(str(exc), EXIT_RUNTIME_ERROR)
    except Exception as exc:  # one line for the operator; details are in the log
        return _fail(f"migration to {revision} failed: {type(exc).__name__}: {first_line(exc)}", EXIT_RUNTIME_ERROR)
    return 0


def _seed(rows: int) -> int:
    import psycopg

    from .jsonlog import log
    from .migrate import DatabaseUnreachable, check_reachable, first_line
    from .seed import seed

    dsn = _database_url()
    try:
        check_reachable(dsn)
        inserted = seed(dsn, rows)
    except DatabaseUnreachable as exc:
        return _fail(str(exc), EXIT_RUNTIME_ERROR)
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidColumnReference) as exc:
        # Missing table, or ON CONFLICT (sku) without the unique index: not migrated to head.
        return _fail(f"seed failed, schema not at head (run `{PROG} migrate`): {first_line(exc)}", EXIT_RUNTIME_ERROR)
    except psycopg.Error as exc:
        return _fail(f"seed failed: {type(exc).__name__}: {first_line(exc)}", EXIT_RUNTIME_ERROR)
    log("seeded", requested=rows, inserted=inserted)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        return _migrate(args.revision)
    if args.command == "seed":
        return _seed(args.rows)
    # No subcommand means serve, as a container entrypoint would run it.
    return _serve(getattr(args, "host", "127.0.0.1"), getattr(args, "port", 8080))


if __name__ == "__main__":
    sys.exit(main())
