"""One throwaway database walked through alembic steps on one connection."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from opsverify.db import alembic_versions
from opsverify.migration.errors import StepFailed
from opsverify.migration.runtime import _database_url_env, _StepLog
from opsverify.migration.schema import Schema, _snapshot

if TYPE_CHECKING:
    from opsverify.migration.tree import MigrationTree


class DbSession:
    """Alembic steps and schema snapshots on one open connection to one database."""

    def __init__(self, tree: MigrationTree, url: str, connection: Any) -> None:
        self.tree = tree
        self.url = url
        self.connection = connection
        self._config: Any = None  # parsed once per session: alembic.ini is not re-read per step

    def step(self, direction: str, destination: str) -> None:
        self.walk([(direction, destination)])

    def walk(
        self,
        plan: Sequence[tuple[str, str]],
        between: Callable[[int, tuple[str, ...]], bool] | None = None,
    ) -> None:
        """Steps ("upgrade"|"downgrade", destination) in one alembic run, as `alembic upgrade` runs
        several revisions: env.py once and the version table read once, not per step.

        `between(i, heads)` runs after step i on this connection, inside the run (no commit), and
        returns False to end the run there. A failing step raises StepFailed with `.phase = i`.
        """
        script = self.tree.script
        phase = [0]
        inspection_error: list[BaseException] = []

        def fn(heads: Any, context: Any) -> Iterator[Any]:
            current: list[Any] = [tuple(heads)]  # alembic's own commands pass the heads tuple too

            def moved(*, heads: set[str], **_: Any) -> None:
                current[0] = tuple(sorted(heads))

            # alembic's own per-step callback hands over its heads: no query to re-read them.
            context.on_version_apply_callbacks = (*context.on_version_apply_callbacks, moved)
            for i, (direction, destination) in enumerate(plan):
                phase[0] = i
                if direction == "upgrade":
                    yield from script._upgrade_revs(destination, current[0])
                else:
                    yield from script._downgrade_revs(destination, current[0])
                # Resumed: alembic has run every step of this one and moved the version table.
                if between is None:
                    continue
                try:
                    if not between(i, current[0]):
                        return
                except BaseException as exc:  # ours, not the migration's: end the run, raise below
                    inspection_error.append(exc)
                    return

        steps = _StepLog()
        alembic_log = logging.getLogger("alembic.runtime.migration")
        old_level = alembic_log.level
        alembic_log.addHandler(steps)
        if alembic_log.getEffectiveLevel() > logging.INFO:
            alembic_log.setLevel(logging.INFO)
        try:
            with _database_url_env(self.url):
                if self._config is None:
                    self._config = self.tree.config(self.url, self.connection)
                destination = plan[-1][1]
                self.tree._run(self._config, fn, as_sql=False, starting_rev=None, destination=destination)
            self.connection.commit()
            # A snapshot after the last step reads on the driver connection, after alembic's own
            # transaction ended: commit that read too, so the database is not left idle in one.
            self._driver().commit()
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.connection.rollback()
            direction, destination = plan[phase[0]]
            revision = steps.last[1] if steps.last else destination
            failed = StepFailed(f"{direction} to {destination}", revision, exc)
            failed.phase = phase[0]
            raise failed from exc
        finally:
            alembic_log.removeHandler(steps)
            alembic_log.setLevel(old_level)
        if inspection_error:
            raise inspection_error[0]

    def upgrade(self, destination: str = "heads") -> None:
        self.step("upgrade", destination)

    def downgrade(self, destination: str) -> None:
        self.step("downgrade", destination)

    def _end_read(self) -> None:
        """End a read-only transaction with COMMIT: psycopg forgets its prepared statements on every
        ROLLBACK, so rolling back made each snapshot (and alembic's own catalog queries) re-plan."""
        try:
            self.connection.commit()
        except Exception:
            with contextlib.suppress(Exception):
                self.connection.rollback()
            raise

    def _driver(self) -> psycopg.Connection:
        raw = self.connection.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)  # the session's engine is postgresql+psycopg
        return raw

    def schema(self) -> Schema:
        """The schema now, between runs (the read is committed: a ROLLBACK would make psycopg
        forget its prepared statements, and the snapshot re-plan)."""
        raw = self._driver()
        try:
            schema = _snapshot(raw)
            raw.commit()
        except Exception:
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        return schema

    def schema_in_run(self) -> Schema:
        """The schema from inside a walk: the run's own transaction is left for alembic to end."""
        return _snapshot(self._driver())

    def heads(self) -> tuple[str, ...]:
        try:
            versions = alembic_versions(self.connection) or ()
        except Exception:
            with contextlib.suppress(Exception):
                self.connection.rollback()
            raise
        finally:
            if self.connection.in_transaction() and not self.connection.invalidated:
                self._end_read()
        return versions
