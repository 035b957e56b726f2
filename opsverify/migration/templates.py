"""Templates: one database per alembic state, each a clone of its parent's plus one step.

The whole tree is replayed once and every per-revision check costs a clone (~50 ms) instead of a
replay.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from opsverify import cleanup
from opsverify.migration.dbsession import DbSession
from opsverify.migration.errors import MigrationError, StepFailed
from opsverify.migration.schema import Schema, schema_snapshot
from opsverify.migration.seed import SeedReport, seed_database
from opsverify.migration.tree import MigrationTree
from opsverify.services import PostgresServer

# Templates: one database per alembic state, each a clone of its parent's plus one step


class TemplateUnavailable(MigrationError):
    pass


@dataclass
class _Template:
    dbname: str
    schema: Schema
    seed: SeedReport | None = None


class TemplateChain:
    """Databases at each alembic state (sorted tuple of heads), built lazily and cloned per check."""

    def __init__(
        self, server: PostgresServer, tree: MigrationTree, *, seed_rows: int = 0, seed_sql: str | None = None
    ):
        self.server = server
        self.tree = tree
        self.seed_rows = seed_rows
        self.seed_sql = seed_sql
        self._templates: dict[tuple[str, ...], _Template] = {}
        self._broken: dict[tuple[str, ...], str] = {}
        self._lock = threading.RLock()
        # Open connections kept across checks: a moved template keeps its warm backend.
        self._sessions: dict[str, tuple[contextlib.ExitStack, DbSession]] = {}
        self._token = cleanup.register("migration templates", self.close)

    def session(self, dbname: str) -> DbSession:
        """An open alembic session on `dbname`, reused until the database is copied or dropped."""
        with self._lock:
            if dbname not in self._sessions:
                stack = contextlib.ExitStack()
                db = stack.enter_context(self.tree.session(self.server.url(dbname)))
                self._sessions[dbname] = (stack, db)
            return self._sessions[dbname][1]

    def release(self, dbname: str) -> None:
        """Close the session on `dbname` (CREATE DATABASE ... TEMPLATE needs it unused)."""
        with self._lock:
            entry = self._sessions.pop(dbname, None)
        if entry is not None:
            with contextlib.suppress(Exception):
                entry[0].close()

    def close(self) -> None:
        for dbname in list(self._sessions):
            self.release(dbname)
        with self._lock:
            names = [t.dbname for t in self._templates.values()]
            self._templates.clear()
        for name in names:
            with contextlib.suppress(Exception):
                self.server.drop_database(name)
        cleanup.done(self._token)

    def _seed(self, url: str) -> SeedReport | None:
        if not self.seed_rows:
            return None
        return seed_database(url, self.seed_rows, only_empty=True, seed_sql=self.seed_sql)

    def at(self, state: Iterable[str]) -> _Template:
        key = tuple(sorted(state))
        with self._lock:
            if key in self._templates:
                return self._templates[key]
            if key in self._broken:
                raise TemplateUnavailable(self._broken[key])
            try:
                template = self._build(key)
            except TemplateUnavailable as exc:
                self._broken[key] = str(exc)
                raise
            self._templates[key] = template
            return template

    def _build(self, key: tuple[str, ...]) -> _Template:
        if not key:
            dbname = self.server.create_database()
            return _Template(dbname, Schema(frozenset()), self._seed(self.server.url(dbname)))
        first = self.tree.revisions[key[0]]
        base = self.at(first.parents) if len(key) == 1 else self.at(key[:1])
        steps = key if len(key) == 1 else key[1:]
        self.release(base.dbname)
        dbname = self.server.create_database(template=base.dbname)
        url = self.server.url(dbname)
        try:
            for rev in steps:
                self.tree.upgrade(url, rev)
            seed = self._seed(url)
            return _Template(dbname, schema_snapshot(url), seed)
        except StepFailed as exc:
            self.server.drop_database(dbname)
            what = "seeded " if self.seed_rows else ""
            raise TemplateUnavailable(f"no {what}database at {', '.join(key)}: {exc}") from None
        except BaseException:
            self.server.drop_database(dbname)
            raise

    def adopt(self, state: Iterable[str], dbname: str, schema: Schema) -> bool:
        """Keep a checked database (now at `state`) as that state's template; False if one exists."""
        key = tuple(sorted(state))
        with self._lock:
            if key in self._templates:
                return False
            seed = self._seed(self.server.url(dbname))
            self._templates[key] = _Template(dbname, schema, seed)
            return True

    def single_consumer(self, state: Iterable[str]) -> bool:
        """Only one revision is ever upgraded from this state, so its template may be moved, not copied."""
        key = tuple(sorted(state))
        if not key:
            return sum(1 for r in self.tree.revisions.values() if not r.parents) == 1
        return len(key) == 1 and len(self.tree.revisions[key[0]].children) == 1

    @contextlib.contextmanager
    def clone(self, state: Iterable[str], *, consume: bool = False) -> Iterator[tuple[str, _Template]]:
        """A throwaway copy of the template at `state`: (dbname, template). Dropped unless adopted.

        consume=True hands over the template database itself (no copy): for a state only one
        check starts from, which then adopts its result as the next state's template.
        """
        key = tuple(sorted(state))
        template = self.at(key)
        if consume:
            with self._lock:
                self._templates.pop(key, None)
            dbname = template.dbname
        else:
            self.release(template.dbname)
            dbname = self.server.create_database(template=template.dbname)
        token = cleanup.register(f"database {dbname}", lambda: self.server.drop_database(dbname))
        try:
            yield dbname, template
        finally:
            with self._lock:
                adopted = any(t.dbname == dbname for t in self._templates.values())
            if not adopted:
                self.release(dbname)
                with contextlib.suppress(Exception):
                    self.server.drop_database(dbname)
            cleanup.done(token)
