"""How a throwaway database reaches the project's env.py: URL forms, DATABASE_URL, alembic's step log."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator

_RUNNING = re.compile(r"Running (upgrade|downgrade) (.*?) -> (.*)$")


def _url_for_sqlalchemy(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _url_for_libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


_env_lock = threading.RLock()


@contextlib.contextmanager
def _database_url_env(url: str | None) -> Iterator[None]:
    """env.py files commonly read $DATABASE_URL; set it for the duration of one alembic run."""
    with _env_lock:
        old = os.environ.get("DATABASE_URL")
        if url is not None:
            os.environ["DATABASE_URL"] = _url_for_libpq(url)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = old


class _StepLog(logging.Handler):
    """Remembers the last "Running upgrade a -> b" alembic logged, to name a failing revision."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: tuple[str, str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = _RUNNING.search(record.getMessage())
        if found:
            direction = found.group(1)
            rev = found.group(3) if direction == "upgrade" else found.group(2)
            self.last = (direction, rev.split(",")[0].strip())
