"""The migration gate's engine: an alembic tree walked, stepped, rendered, linted and seeded.

Alembic runs in this process through its own API (Config, ScriptDirectory, EnvironmentContext,
the same calls `alembic.command` makes), with the ScriptDirectory parsed once per tree. Each
throwaway database URL reaches the project's env.py three ways: `sqlalchemy.url`,
`config.attributes["connection"]` (an open SQLAlchemy Connection) and env `DATABASE_URL`.

Databases come from chains of templates, one per alembic state (set of heads): the template at
a revision is a clone of its parent's plus one upgrade, so the whole tree is replayed once and
every per-revision check costs a clone (~50 ms) instead of a replay.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from opsverify import cleanup
from opsverify.config import REPO_ROOT
from opsverify.errors import OpsError
from opsverify.redact import redact
from opsverify.services import PostgresServer

log = logging.getLogger("opsverify.migrations")

# Rules that block writers, break running code or rewrite tables: these fail the gate by default.
DEFAULT_LINT_RULES: tuple[str, ...] = (
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "adding-required-field",
    "adding-not-nullable-field",
    "changing-column-type",
    "constraint-missing-not-valid",
    "adding-foreign-key-constraint",
    "renaming-column",
    "renaming-table",
    "ban-drop-column",
    "ban-drop-table",
    "disallowed-unique-constraint",
)
LINT_TIMEOUT_S = 60.0
MAX_REVISION_SLUG = 40
_RUNNING = re.compile(r"Running (upgrade|downgrade) (.*?) -> (.*)$")
_MARKER = re.compile(r"^-- Running upgrade (.*?) -> (.+)$", re.M)


class MigrationError(OpsError):
    """A tree that cannot be loaded or a step that failed; the message carries labelled context."""


class StepFailed(MigrationError):
    def __init__(self, direction: str, revision: str | None, cause: BaseException) -> None:
        self.direction = direction
        self.revision = revision
        self.cause = cause
        self.phase = 0  # which step of a DbSession.walk failed
        statement = getattr(cause, "statement", None)
        orig = getattr(cause, "orig", None)
        detail = (
            str(orig or cause).strip().splitlines()[0] if str(orig or cause).strip() else type(cause).__name__
        )
        lines = [
            f"{direction} failed",
            f"Revision: {revision or 'unknown'}",
            f"Error: {type(cause).__name__}: {detail}",
        ]
        if statement:
            lines.append(f"Statement: {' '.join(str(statement).split())[:400]}")
        self.detail = redact("\n".join(lines[2:]))
        super().__init__(redact("\n".join(lines)))

    @property
    def not_implemented(self) -> bool:
        """The downgrade raised NotImplementedError: the revision declares itself irreversible."""
        seen: set[int] = set()
        exc: BaseException | None = self.cause
        while exc is not None and id(exc) not in seen:
            if isinstance(exc, NotImplementedError):
                return True
            seen.add(id(exc))
            exc = exc.__cause__ or exc.__context__
        return False


def labelled(title: str, *context: tuple[str, object], help: str | None = None) -> str:
    """pytest-alembic style: a headline, then `Label: value` lines an operator can act on."""
    lines = [title]
    for label, value in context:
        text = str(value).rstrip()
        if "\n" in text:
            lines.append(f"{label}:")
            lines.extend(f"  {line}" for line in text.splitlines())
        else:
            lines.append(f"{label}: {text}")
    if help:
        lines.append(f"Help: {help}")
    return redact("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class Revision:
    id: str
    parents: tuple[str, ...]
    children: tuple[str, ...]
    doc: str
    path: Path
    # Module attribute `data_change = True`: the revision rewrites rows on purpose.
    data_change: bool

    @property
    def slug(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.doc.lower()).strip("-")
        if len(words) > MAX_REVISION_SLUG:  # cut at a word boundary
            words = words[: MAX_REVISION_SLUG + 1].rsplit("-", 1)[0]
        return words or "revision"

    @property
    def test_id(self) -> str:
        return f"{self.id}-{self.slug}"

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1

    def describe(self) -> str:
        return f"{self.id} ({self.doc or 'no message'}) {self.path.name}"


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


class MigrationTree:
    """One project's alembic tree, loaded from its alembic.ini once."""

    def __init__(self, ini: Path) -> None:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        self.ini = Path(ini).resolve()
        if not self.ini.is_file():
            raise MigrationError(f"alembic.ini not found: {self.ini}")
        self._config_cls = Config
        self._env_code: Any = None
        try:
            self.script = ScriptDirectory.from_config(Config(str(self.ini)))
            walked = list(self.script.walk_revisions())
        except Exception as exc:
            raise MigrationError(
                labelled(
                    "the alembic tree cannot be loaded",
                    ("Config", self.ini),
                    ("Error", f"{type(exc).__name__}: {exc}"),
                )
            ) from None
        self.revisions: dict[str, Revision] = {}
        for script in reversed(walked):  # base first
            down = script.down_revision
            parents = (down,) if isinstance(down, str) else tuple(down or ())
            self.revisions[script.revision] = Revision(
                id=script.revision,
                parents=tuple(parents),
                children=tuple(sorted(script.nextrev)),
                doc=(script.doc or "").strip().splitlines()[0] if script.doc else "",
                path=Path(script.path),
                data_change=bool(getattr(script.module, "data_change", False)),
            )

    # -- structure -------------------------------------------------------------------------

    @property
    def ordered(self) -> list[Revision]:
        """Base first, every revision after all of its parents."""
        order: list[Revision] = []
        placed: set[str] = set()
        pending = list(self.revisions.values())
        while pending:
            ready = [r for r in pending if all(p in placed for p in r.parents)]
            if not ready:  # a cycle alembic would have refused; keep the walk order
                order.extend(pending)
                break
            for rev in sorted(ready, key=lambda r: list(self.revisions).index(r.id)):
                order.append(rev)
                placed.add(rev.id)
                pending.remove(rev)
        return order

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(sorted(self.script.get_heads()))

    def ancestors(self, rev: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.revisions[rev].parents)
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            stack.extend(self.revisions[cur].parents)
        return seen

    def describe_heads(self) -> str:
        return "\n".join(self.revisions[h].describe() for h in self.heads)

    # -- running alembic ---------------------------------------------------------------------

    def config(
        self, url: str | None = None, connection: Any = None, buffer: io.StringIO | None = None
    ) -> Any:
        cfg = self._config_cls(str(self.ini), output_buffer=buffer)
        if url:
            # ConfigParser interpolation: a literal % (URL-encoded passwords) must be doubled.
            cfg.set_main_option("sqlalchemy.url", _url_for_sqlalchemy(url).replace("%", "%%"))
        if connection is not None:
            cfg.attributes["connection"] = connection
        # pytest-alembic's convention: env.py should not reconfigure logging of the host process.
        cfg.attributes["configure_logger"] = False
        return cfg

    def _run(
        self,
        cfg: Any,
        fn: Callable[[Any, Any], Any],
        *,
        as_sql: bool,
        starting_rev: str | None,
        destination: str,
    ) -> None:
        from alembic.runtime.environment import EnvironmentContext

        with EnvironmentContext(
            cfg, self.script, fn=fn, as_sql=as_sql, starting_rev=starting_rev, destination_rev=destination
        ):
            self._run_env()

    def _run_env(self) -> None:
        """`ScriptDirectory.run_env()` with env.py compiled once per tree, not once per step: a fresh
        module per run as alembic makes it, minus a compile that was a tenth of every step."""
        path = Path(self.script.env_py_location)
        if self._env_code is None:
            if not path.is_file():  # a sourceless env.pyc: alembic knows how to find it
                self.script.run_env()
                return
            self._env_code = compile(path.read_bytes(), str(path), "exec")
        spec = importlib.util.spec_from_file_location("env_py", path)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        exec(self._env_code, module.__dict__)

    @contextlib.contextmanager
    def session(self, url: str) -> Iterator[DbSession]:
        """One connection to `url` shared by consecutive steps and snapshots (warm catalog caches)."""
        from sqlalchemy import create_engine, pool

        engine = create_engine(_url_for_sqlalchemy(url), poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                yield DbSession(self, url, connection)
        finally:
            engine.dispose()

    def step(self, url: str, direction: str, destination: str) -> None:
        """`alembic upgrade|downgrade DESTINATION` on the database at `url`, in this process."""
        with self.session(url) as db:
            db.step(direction, destination)

    def upgrade(self, url: str, destination: str = "heads") -> None:
        self.step(url, "upgrade", destination)

    def downgrade(self, url: str, destination: str) -> None:
        self.step(url, "downgrade", destination)

    def downgrade_target(self, rev: str) -> str:
        """Where `downgrade` goes to undo just `rev`: its (first) parent, or base for a root."""
        parents = self.revisions[rev].parents
        return parents[0] if parents else "base"

    def render_sql(self, rev: str) -> str:
        """`alembic upgrade PARENT:REV --sql`: this revision's SQL, after the script's SET preamble."""
        revision = self.revisions[rev]
        start = revision.parents[0] if revision.parents else None
        buffer = io.StringIO()
        with _database_url_env(None):
            cfg = self.config("postgresql://opsverify@127.0.0.1/offline", buffer=buffer)

            def fn(current: Any, context: Any) -> Any:
                return self.script._upgrade_revs(rev, current)

            try:
                self._run(cfg, fn, as_sql=True, starting_rev=start, destination=rev)
            except Exception as exc:
                raise StepFailed("offline upgrade --sql", rev, exc) from exc
        return extract_revision_sql(buffer.getvalue(), rev)


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
            exists = self.connection.exec_driver_sql(
                "SELECT to_regclass('alembic_version') IS NOT NULL"
            ).scalar()
            if not exists:
                return ()
            rows = self.connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version ORDER BY 1"
            ).fetchall()
        except Exception:
            with contextlib.suppress(Exception):
                self.connection.rollback()
            raise
        finally:
            if self.connection.in_transaction() and not self.connection.invalidated:
                self._end_read()
        return tuple(str(r[0]) for r in rows)


_IGNORE_COMMENT = re.compile(r"^(--\s*squawk-ignore\b[^\n;]*);?[ \t]*\n\s*", re.M)


def _attach_squawk_ignores(body: str) -> str:
    """`op.execute("-- squawk-ignore RULE")` renders as its own `...;` line; squawk wants the
    comment directly above the statement it excuses, so drop the `;` and the blank lines."""
    return _IGNORE_COMMENT.sub(lambda m: m.group(1) + "\n", body)


def extract_revision_sql(script: str, rev: str) -> str:
    """One revision's part of an offline script, after the SET statements that open the script."""
    markers = list(_MARKER.finditer(script))
    preamble_end = markers[0].start() if markers else len(script)
    preamble = [s.strip() for s in script[:preamble_end].split(";\n") if s.strip().upper().startswith("SET ")]
    for i, marker in enumerate(markers):
        if rev in [p.strip() for p in marker.group(2).split(",")]:
            end = markers[i + 1].start() if i + 1 < len(markers) else len(script)
            body = script[marker.start() : end].rstrip()
            body = re.sub(r"\n\s*BEGIN;\s*$", "", body)
            head = "".join(f"{s};\n" for s in preamble)
            return f"{head}\nBEGIN;\n\n{_attach_squawk_ignores(body)}\n"
    raise MigrationError(f"offline SQL has no section for revision {rev}")


# ---------------------------------------------------------------------------------------------
# Schema snapshots: what a downgrade must restore


@dataclass(frozen=True)
class Schema:
    items: frozenset[str]

    def diff(self, other: Schema) -> tuple[list[str], list[str]]:
        """(only in self, only in other)"""
        return sorted(self.items - other.items), sorted(other.items - self.items)


_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'"
)
# FirstNormalObjectId: every object created after initdb (all a migration can touch) has an OID at or
# above it, so the snapshot never scans the built-in catalog rows (a third of its time otherwise).
_FIRST_USER_OID = 16384
# One statement, each branch a scan of a single catalog (no joins): after a step's DDL the plan is
# rebuilt, and planning joins over the catalogs was most of a snapshot's cost (2.7 ms of ~6). Names
# and filters are put together here, in Python. Lines read as "<kind> <definition>".
_SNAPSHOT_SQL = f"""
SELECT 'c', c.oid::int8, c.relnamespace::int8, c.relname::text, c.relkind::text,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
  FROM pg_class c WHERE c.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'n', n.oid::int8, NULL, n.nspname::text, NULL, NULL FROM pg_namespace n
UNION ALL SELECT 'a', a.attrelid::int8, a.attnum::int8, a.attname::text,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
       CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
  FROM pg_attribute a WHERE a.attrelid >= {_FIRST_USER_OID} AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'd', d.adrelid::int8, d.adnum::int8, pg_get_expr(d.adbin, d.adrelid), NULL, NULL
  FROM pg_attrdef d WHERE d.adrelid >= {_FIRST_USER_OID}
UNION ALL SELECT 'k', con.conrelid::int8, NULL, con.conname::text, pg_get_constraintdef(con.oid), NULL
  FROM pg_constraint con WHERE con.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'i', i.indrelid::int8, NULL, pg_get_indexdef(i.indexrelid), NULL, NULL
  FROM pg_index i WHERE i.indexrelid >= {_FIRST_USER_OID}
UNION ALL SELECT 't', t.oid::int8, t.typnamespace::int8, t.typname::text, t.typtype::text, NULL
  FROM pg_type t WHERE t.oid >= {_FIRST_USER_OID} AND t.typtype IN ('e', 'd')
UNION ALL SELECT 'e', e.enumtypid::int8, NULL, e.enumlabel::text, e.enumsortorder::text, NULL
  FROM pg_enum e WHERE e.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'p', p.oid::int8, p.pronamespace::int8, p.proname::text,
       pg_get_function_identity_arguments(p.oid), NULL
  FROM pg_proc p WHERE p.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'x', dep.objid::int8, NULL, NULL, NULL, NULL
  FROM pg_depend dep WHERE dep.deptype = 'e' AND dep.objid >= {_FIRST_USER_OID}
UNION ALL SELECT 'g', tg.tgrelid::int8, NULL, pg_get_triggerdef(tg.oid), NULL, NULL
  FROM pg_trigger tg WHERE tg.oid >= {_FIRST_USER_OID} AND NOT tg.tgisinternal
UNION ALL SELECT 'X', NULL, NULL, ext.extname::text, NULL, NULL FROM pg_extension ext
"""
_TABLE_KINDS = frozenset("rpvmf")
_RELATION_KINDS = frozenset("rpvmfS")


def _system_schema(name: str) -> bool:
    return name in ("pg_catalog", "information_schema") or name.startswith(("pg_toast", "pg_temp"))


def _schema_lines(rows: Iterable[Sequence[Any]]) -> frozenset[str]:
    """The catalog rows of _SNAPSHOT_SQL as comparable lines (names and definitions, not OIDs)."""
    by_kind: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        by_kind.setdefault(row[0], []).append(row)
    schemas = {int(r[1]): str(r[3]) for r in by_kind.get("n", ())}
    user_schema = {oid: not _system_schema(name) for oid, name in schemas.items()}
    # relation oid -> (qualified name, relkind, kept: in a user schema and not alembic's own table)
    rels: dict[int, tuple[str, str, bool]] = {}
    lines: set[str] = set()
    for _, oid, nsp, name, kind, viewdef in by_kind.get("c", ()):
        qualified = f"{schemas.get(nsp, '?')}.{name}"
        rels[oid] = (qualified, kind, user_schema.get(nsp, False))
        if not user_schema.get(nsp, False):
            continue
        if kind in _RELATION_KINDS and not name.startswith("alembic_version"):
            lines.add(f"relation {kind} {qualified}")
        if kind in ("v", "m"):
            lines.add(f"view {qualified} AS {viewdef}")

    def table(oid: int) -> str | None:
        """The table's qualified name when its objects belong in the snapshot."""
        found = rels.get(oid)
        if found is None or not found[2] or found[0].endswith(".alembic_version"):
            return None
        return found[0]

    defaults = {(r[1], r[2]): r[3] for r in by_kind.get("d", ())}
    for _, relid, num, name, typ, suffix in by_kind.get("a", ()):
        owner = table(relid)
        if owner is None or rels[relid][1] not in _TABLE_KINDS:
            continue
        default = defaults.get((relid, num))
        lines.add(f"column {owner}.{name} {typ}{'' if default is None else ' DEFAULT ' + default}{suffix}")
    for _, relid, _n, name, definition, _v in by_kind.get("k", ()):
        owner = table(relid)
        if owner is not None:
            lines.add(f"constraint {owner} {name} {definition}")
    for _, relid, _n, definition, _d, _v in by_kind.get("i", ()):
        if table(relid) is not None:
            lines.add(f"index {definition}")
    labels: dict[int, list[tuple[float, str]]] = {}
    for _, typ, _n, label, order, _v in by_kind.get("e", ()):
        labels.setdefault(typ, []).append((float(order), label))
    for _, oid, nsp, name, typtype, _v in by_kind.get("t", ()):
        if user_schema.get(nsp, False):
            enum = ",".join(label for _, label in sorted(labels.get(oid, ())))
            lines.add(f"type {schemas[nsp]}.{name} {enum or typtype}")
    extension_owned = {int(r[1]) for r in by_kind.get("x", ())}
    for _, oid, nsp, name, args, _v in by_kind.get("p", ()):
        if user_schema.get(nsp, False) and oid not in extension_owned:
            lines.add(f"function {schemas[nsp]}.{name}({args})")
    for _, relid, _n, definition, _d, _v in by_kind.get("g", ()):
        found = rels.get(relid)
        if found is not None and found[2]:
            lines.add(f"trigger {definition}")
    for row in by_kind.get("X", ()):
        if row[3] != "plpgsql":
            lines.add(f"extension {row[3]}")
    for name in schemas.values():
        if not _system_schema(name) and name != "public":
            lines.add(f"schema {name}")
    return frozenset(lines)


def _snapshot(conn: psycopg.Connection) -> Schema:
    """The schema on `conn`, in whatever transaction it is in (prepared: most DDL keeps the plan)."""
    return Schema(_schema_lines(conn.execute(_SNAPSHOT_SQL, prepare=True).fetchall()))  # type: ignore[call-overload]


def schema_snapshot(url: str) -> Schema:
    """The database's schema as comparable lines (names and definitions, not physical order)."""
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        return _snapshot(conn)


def current_heads(url: str, *, read_only: bool = False) -> tuple[str, ...]:
    """`alembic current`: the versions in alembic_version (empty when the table does not exist)."""
    options = "-c default_transaction_read_only=on" if read_only else None
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5, options=options) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return ()
        rows = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
    return tuple(str(r[0]) for r in rows)


# ---------------------------------------------------------------------------------------------
# Generic seeding and row counts


@dataclass(frozen=True)
class _Column:
    name: str
    type_sql: str
    type_kind: str  # pg_type.typtype / typcategory, e.g. "e" enum
    udt: str
    not_null: bool
    has_default: bool
    fk: tuple[str, str] | None  # (table, column) for single-column foreign keys
    check_literal: str | None


@dataclass
class SeedReport:
    seeded: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{t}: +{n}" for t, n in sorted(self.seeded.items())]
        parts += [f"{t}: skipped ({why})" for t, why in sorted(self.skipped.items())]
        return ", ".join(parts) or "no tables"


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        f"""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_SCHEMA_FILTER.replace("%%", "%")}
              AND c.relname <> 'alembic_version' ORDER BY 1"""
    ).fetchall()
    return [str(r[0]) for r in rows]


def row_counts(url: str) -> dict[str, int]:
    """Exact `count(*)` of every user table."""
    counts: dict[str, int] = {}
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        for table in _tables(conn):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def _columns(conn: psycopg.Connection, table: str) -> list[_Column]:
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typtype, t.typcategory, t.typname,
               a.attnotnull,
               (d.adbin IS NOT NULL OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
               (SELECT quote_ident(fn.nspname) || '.' || quote_ident(fc.relname) || ' '
                       || quote_ident(fa.attname)
                  FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.confrelid
                  JOIN pg_namespace fn ON fn.oid = fc.relnamespace
                  JOIN pg_attribute fa ON fa.attrelid = f.confrelid AND fa.attnum = f.confkey[1]
                 WHERE f.conrelid = a.attrelid AND f.contype = 'f' AND array_length(f.conkey, 1) = 1
                   AND f.conkey[1] = a.attnum LIMIT 1),
               (SELECT pg_get_constraintdef(ck.oid) FROM pg_constraint ck
                 WHERE ck.conrelid = a.attrelid AND ck.contype = 'c' AND ck.conkey = ARRAY[a.attnum] LIMIT 1)
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()
    columns = []
    for name, type_sql, typtype, category, typname, not_null, has_default, fk, check in rows:
        literal = None
        if check:
            found = re.search(r"'((?:[^']|'')*)'::", check)
            literal = found.group(1) if found else None
        columns.append(
            _Column(
                name=name,
                type_sql=type_sql,
                type_kind=f"{typtype}{category}",
                udt=typname,
                not_null=bool(not_null),
                has_default=bool(has_default),
                fk=tuple(fk.rsplit(" ", 1)) if fk else None,  # type: ignore[arg-type]
                check_literal=literal,
            )
        )
    return columns


@dataclass(frozen=True)
class _CompositeFk:
    ref_table: str  # quoted, schema-qualified
    columns: tuple[str, ...]  # this table's, unquoted
    ref_columns: tuple[str, ...]  # the referenced table's, quoted


def _composite_fks(conn: psycopg.Connection, table: str) -> list[_CompositeFk]:
    """Foreign keys over several columns: their values must come from one referenced row."""
    rows = conn.execute(
        """
        SELECT quote_ident(fn.nspname) || '.' || quote_ident(fc.relname),
               array(SELECT a.attname::text FROM unnest(f.conkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.num ORDER BY k.i),
               array(SELECT quote_ident(a.attname) FROM unnest(f.confkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.num ORDER BY k.i)
          FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.confrelid
          JOIN pg_namespace fn ON fn.oid = fc.relnamespace
         WHERE f.conrelid = %s::regclass AND f.contype = 'f' AND array_length(f.conkey, 1) > 1
         ORDER BY f.conname
        """,
        (table,),
    ).fetchall()
    return [_CompositeFk(str(ref), tuple(cols), tuple(refs)) for ref, cols, refs in rows]


def _value_sql(table: str, col: _Column) -> str | None:
    """A SQL expression over g.n (1..rows) giving a valid, distinct value; None when unknown."""
    ident = sql.Identifier(col.name).as_string(None)
    if col.check_literal is not None:
        return f"'{col.check_literal}'::{col.type_sql}"
    typtype, category = col.type_kind[0], col.type_kind[1:]
    if typtype == "e":
        return f"(enum_range(NULL::{col.type_sql}))[1]"
    if category == "N":  # numeric: above the current maximum so unique columns stay unique
        return f"((SELECT coalesce(max({ident}), 0) FROM {table}) + g.n)::{col.type_sql}"
    if category == "S":
        length = re.search(r"\((\d+)\)", col.type_sql)
        text = f"'{col.name[:8]}-' || g.n || '-' || md5(random()::text)"
        return f"left({text}, {length.group(1)})::{col.type_sql}" if length else f"({text})::{col.type_sql}"
    if category == "B":
        return "(g.n % 2 = 0)"
    if category == "D":
        return f"(now() - g.n * interval '1 minute')::{col.type_sql}"
    if category == "T":
        return f"(g.n * interval '1 second')::{col.type_sql}"
    if category == "A":
        return f"'{{}}'::{col.type_sql}"
    if category == "I":
        return f"('10.0.0.' || (g.n % 250 + 1))::{col.type_sql}"
    if col.udt == "uuid":
        return "md5(random()::text || g.n)::uuid"
    if col.udt in ("json", "jsonb"):
        return f"json_build_object('n', g.n)::{col.type_sql}"
    if col.udt == "bytea":
        return "decode(md5(g.n::text), 'hex')"
    return None


def seed_database(
    url: str, rows: int, *, only_empty: bool = False, seed_sql: str | None = None
) -> SeedReport:
    """Valid rows in every table, generated from the live schema (FK order, NOT NULL, unique values).

    Columns with defaults, identities and nullable non-FK columns are left to the database; a
    table whose required column has a type we cannot generate is skipped and reported.
    """
    report = SeedReport()
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        tables = _tables(conn)
        columns = {t: _columns(conn, t) for t in tables}
        composites = {t: _composite_fks(conn, t) for t in tables}
        order: list[str] = []

        def visit(table: str, path: tuple[str, ...]) -> None:
            if table in order or table in path:
                return
            refs = [c.fk[0] for c in columns.get(table, []) if c.fk] + [f.ref_table for f in composites[table]]
            for ref in refs:
                if ref != table and ref in columns:
                    visit(ref, (*path, table))
            order.append(table)

        for table in tables:
            visit(table, ())
        for table in order:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if only_empty and row and row[0]:
                continue
            names: list[str] = []
            values: list[str] = []
            problem = None
            # Composite keys: every column of one key reads the same referenced row (same order, same offset).
            from_row: dict[str, str] = {}
            required = {c.name for c in columns[table] if c.not_null}
            for fk in composites[table]:
                if fk.ref_table not in columns:
                    continue
                ref_count_row = conn.execute(f"SELECT count(*) FROM {fk.ref_table}").fetchone()
                ref_count = int(ref_count_row[0]) if ref_count_row else 0
                if ref_count == 0:
                    if required & set(fk.columns):
                        problem = f"({', '.join(fk.columns)}) references empty {fk.ref_table}"
                        break
                    continue
                key_order = ", ".join(fk.ref_columns)
                for col_name, ref_col in zip(fk.columns, fk.ref_columns, strict=True):
                    from_row.setdefault(
                        col_name,
                        f"(SELECT {ref_col} FROM {fk.ref_table} ORDER BY {key_order}"
                        f" OFFSET ((g.n - 1) % {ref_count}) LIMIT 1)",
                    )
            for col in columns[table]:
                if problem:
                    break
                if col.name in from_row:
                    names.append(col.name)
                    values.append(from_row[col.name])
                    continue
                if col.fk and col.fk[0] in columns:
                    ref_table, ref_col = col.fk
                    ref_count_row = conn.execute(f"SELECT count(*) FROM {ref_table}").fetchone()
                    ref_count = int(ref_count_row[0]) if ref_count_row else 0
                    if ref_count == 0:
                        if col.not_null:
                            problem = f"{col.name} references empty {ref_table}"
                            break
                        continue
                    names.append(col.name)
                    values.append(
                        f"(SELECT {ref_col} FROM {ref_table} ORDER BY {ref_col}"
                        f" OFFSET ((g.n - 1) % {ref_count}) LIMIT 1)"
                    )
                    continue
                if col.has_default or not col.not_null:
                    continue
                expr = _value_sql(table, col)
                if expr is None:
                    problem = f"no generator for {col.name} {col.type_sql}"
                    break
                names.append(col.name)
                values.append(expr)
            if problem:
                report.skipped[table] = problem
                continue
            cols = ", ".join(sql.Identifier(n).as_string(None) for n in names)
            statement = (
                f"INSERT INTO {table} ({cols}) SELECT {', '.join(values)}"
                f" FROM generate_series(1, {rows}) AS g(n)"
                if names
                else f"INSERT INTO {table} DEFAULT VALUES"
            )
            try:
                if names:
                    conn.execute(statement)  # type: ignore[call-overload]
                else:
                    for _ in range(rows):
                        conn.execute(statement)  # type: ignore[call-overload]
                report.seeded[table] = rows
            except psycopg.Error as exc:
                report.skipped[table] = str(exc).strip().splitlines()[0][:160]
        if seed_sql:
            try:
                conn.execute(seed_sql)  # type: ignore[call-overload]
            except psycopg.Error as exc:
                report.skipped["seed_sql"] = str(exc).strip().splitlines()[0][:160]
    return report


@dataclass(frozen=True)
class RowLoss:
    table: str
    before: int
    after: int


def compare_row_counts(before: dict[str, int], after: dict[str, int]) -> list[RowLoss]:
    """Tables present on both sides whose row count changed."""
    return [RowLoss(t, before[t], after[t]) for t in sorted(before) if t in after and before[t] != after[t]]


def describe_counts(losses: Sequence[RowLoss]) -> str:
    return "\n".join(f"{x.table}: {x.before} -> {x.after} rows ({x.after - x.before:+d})" for x in losses)


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Checks the suites phrase as promises


@dataclass(frozen=True)
class CheckOutcome:
    revision: str
    # None: passed; otherwise the failure (labelled) or the skip reason.
    failure: str | None = None
    skip: str | None = None
    seconds: float = 0.0
    notes: tuple[str, ...] = ()


def stairway(
    chain: TemplateChain, rev: str, *, irreversible: Sequence[str] = (), lowest: str | None = None
) -> CheckOutcome:
    """Upgrade to REV, downgrade to its parent (schema must match the parent's), upgrade again."""
    tree = chain.tree
    revision = tree.revisions[rev]
    started = time.monotonic()
    if rev in irreversible:
        return CheckOutcome(rev, skip=f"{rev}: explicit lower bound (listed in migrations.irreversible)")
    if lowest is not None and (rev == lowest or rev in tree.ancestors(lowest)):
        return CheckOutcome(
            rev, skip=f"{rev}: at or below migrations.lowest = {lowest}; its downgrade is not required"
        )
    with chain.clone(revision.parents, consume=chain.single_consumer(revision.parents)) as (dbname, parent):
        outcome, state, schema = _stairway_steps(chain.session(dbname), revision, parent.schema)
        if state is not None and schema is not None:
            # The database is at REV again with REV's schema: it becomes the template its children start from.
            chain.adopt(state, dbname, schema)
        if outcome is not None:
            return outcome
    return CheckOutcome(rev, seconds=time.monotonic() - started)


def _stairway_steps(
    db: DbSession, revision: Revision, parent_schema: Schema
) -> tuple[CheckOutcome | None, tuple[str, ...] | None, Schema | None]:
    """(failure or skip, state to adopt the database as, its schema).

    The three steps run in one alembic run (`between` compares the schema after the downgrade),
    so the check pays for env.py and the version-table read once, not three times."""
    rev = revision.id
    context = (("Revision", revision.describe()), ("Parent", ", ".join(revision.parents) or "base"))
    mismatch: list[str] = []
    again: list[Schema] = []

    def between(step: int, heads: tuple[str, ...]) -> bool:
        if step == 2:
            # No snapshot of the first upgrade: the second must reach the same schema, which the
            # child's own stairway proves (its downgrade is compared with this one).
            again.append(db.schema_in_run())
        if step != 1:
            return True
        downgraded = db.schema_in_run()
        if downgraded == parent_schema:
            return True
        missing, extra = parent_schema.diff(downgraded)
        if heads != tuple(sorted(revision.parents)):
            headline = f"downgrade of {rev} did not reach its parent"
        elif extra and not missing:
            headline = f"downgrade of {rev} leaves behind what its upgrade created (a no-op or partial downgrade)"
        else:
            headline = f"downgrade of {rev} does not restore the schema of its parent"
        mismatch.append(
            labelled(
                headline,
                *context,
                ("Expected (at parent) but missing", "\n".join(missing) or "-"),
                ("Left behind by downgrade", "\n".join(extra) or "-"),
                help=f"make downgrade() in {revision.path.name} undo every operation of upgrade()",
            )
        )
        return False

    try:
        db.walk([("upgrade", rev), ("downgrade", db.tree.downgrade_target(rev)), ("upgrade", rev)], between)
    except StepFailed as exc:
        if exc.phase == 0:
            failure = labelled(f"upgrade to {rev} failed", *context, ("Error", exc.detail))
            return CheckOutcome(rev, failure=failure), None, None
        if exc.phase == 2:
            failure = labelled(f"upgrade to {rev} after its downgrade failed", *context, ("Error", exc.detail))
            return CheckOutcome(rev, failure=failure), None, None
        if exc.not_implemented:
            skip = CheckOutcome(rev, skip=f"{rev}: explicit lower bound (downgrade raises NotImplementedError)")
            # Still usable by its children at REV: with a transaction per migration the upgrade
            # stayed; with one transaction per run (alembic's default env.py) it rolled back too.
            if db.heads() != (rev,):
                try:
                    db.upgrade(rev)
                except StepFailed:
                    return skip, None, None
            return skip, (rev,), db.schema()
        failure = labelled(
            f"downgrade of {rev} failed: the revision is irreversible but not declared as such",
            *context,
            ("Error", exc.detail),
            help=f"fix downgrade(), or declare it: raise NotImplementedError in {revision.path.name}"
            f" or list '{rev}' in migrations.irreversible",
        )
        return CheckOutcome(rev, failure=failure), None, None
    if mismatch:
        return CheckOutcome(rev, failure=mismatch[0]), None, None
    return None, (rev,), again[0]


def full_downgrade(
    chain: TemplateChain, *, irreversible: Sequence[str] = (), lowest: str | None = None
) -> tuple[str | None, list[str]]:
    """Downgrade head → lowest allowed revision one revision at a time. (failure, notes)."""
    tree = chain.tree
    notes: list[str] = []
    floor: set[str] = set()
    if lowest:
        floor = {lowest, *tree.ancestors(lowest)}
    with chain.clone(tree.heads) as (dbname, _template):
        url = chain.server.url(dbname)
        stopped: set[str] = set()
        for _ in range(len(tree.revisions) + 1):
            current = [h for h in current_heads(url) if h not in stopped and h not in floor]
            if not current:
                break
            rev = current[-1]
            if rev in irreversible:
                notes.append(f"stopped at {rev}: listed in migrations.irreversible (explicit lower bound)")
                stopped.add(rev)
                continue
            try:
                tree.downgrade(url, tree.downgrade_target(rev))
            except StepFailed as exc:
                if exc.not_implemented:
                    notes.append(
                        f"stopped at {rev}: downgrade raises NotImplementedError (explicit lower bound)"
                    )
                    stopped.add(rev)
                    continue
                return (
                    labelled(
                        f"full downgrade stopped at {rev}",
                        ("Revision", tree.revisions[rev].describe()),
                        ("Lowest allowed", lowest or "base"),
                        ("Error", exc.detail),
                        help="fix its downgrade(), or declare it irreversible "
                        "(NotImplementedError or migrations.irreversible)",
                    ),
                    notes,
                )
        remaining = current_heads(url)
    notes.append(f"reached: {', '.join(remaining) or 'base'}")
    return None, notes


def upgrade_keeps_rows(chain: TemplateChain, rev: str, *, exempt: bool) -> CheckOutcome:
    """Rows seeded at the parent survive the upgrade to REV (tables on both sides keep their counts)."""
    tree = chain.tree
    revision = tree.revisions[rev]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            dbname, parent = stack.enter_context(
                chain.clone(revision.parents, consume=chain.single_consumer(revision.parents))
            )
        except TemplateUnavailable as exc:
            reason = str(exc).splitlines()[0]
            return CheckOutcome(
                rev, skip=f"cannot seed the parent of {rev}: {reason} (its own check reports it)"
            )
        url = chain.server.url(dbname)
        before = row_counts(url)
        seeded = parent.seed.describe() if parent.seed else "none"
        try:
            tree.upgrade(url, rev)
        except StepFailed as exc:
            return CheckOutcome(
                rev,
                failure=labelled(
                    f"upgrade to {rev} fails on a database that holds rows",
                    ("Revision", revision.describe()),
                    ("Rows before", ", ".join(f"{t}={n}" for t, n in before.items()) or "-"),
                    ("Seeded", seeded),
                    ("Error", exc.detail),
                    help="production has rows: give a new NOT NULL column a default, "
                    "or backfill before constraining",
                ),
            )
        after = row_counts(url)
        losses = compare_row_counts(before, after)
        if losses and not exempt:
            return CheckOutcome(
                rev,
                failure=labelled(
                    f"upgrade to {rev} changed row counts",
                    ("Revision", revision.describe()),
                    ("Tables", describe_counts(losses)),
                    help=f"if {rev} is a data migration, set `data_change = True` in {revision.path.name} "
                    f"or list it in migrations.data_changes",
                ),
            )
        notes = (f"declared data change: {describe_counts(losses)}",) if losses else ()
        chain.adopt((rev,), dbname, schema_snapshot(url))
        return CheckOutcome(
            rev, seconds=time.monotonic() - started, notes=(f"rows before: {before}", f"seeded: {seeded}", *notes)
        )


def downgrade_keeps_rows(
    chain: TemplateChain, *, irreversible: Sequence[str] = (), exempt: Sequence[str] = ()
) -> CheckOutcome:
    """`downgrade -1` from head on a seeded database loses no rows of tables on both sides."""
    tree = chain.tree
    heads = tree.heads
    if len(heads) != 1:
        return CheckOutcome(
            ",".join(heads), skip=f"{len(heads)} heads: `downgrade -1` is ambiguous (see test_single_head)"
        )
    head = heads[0]
    revision = tree.revisions[head]
    if head in irreversible:
        return CheckOutcome(head, skip=f"{head}: explicit lower bound (listed in migrations.irreversible)")
    with contextlib.ExitStack() as stack:
        try:
            dbname, template = stack.enter_context(chain.clone(heads))
        except TemplateUnavailable as exc:
            reason = str(exc).splitlines()[0]
            return CheckOutcome(head, skip=f"no seeded database at head: {reason} (its own check reports it)")
        url = chain.server.url(dbname)
        before = row_counts(url)
        target = tree.downgrade_target(head)
        try:
            tree.downgrade(url, target)
        except StepFailed as exc:
            if exc.not_implemented:
                return CheckOutcome(
                    head, skip=f"{head}: explicit lower bound (downgrade raises NotImplementedError)"
                )
            return CheckOutcome(
                head,
                failure=labelled(
                    f"downgrade -1 from head {head} fails on a database that holds rows",
                    ("Revision", revision.describe()),
                    ("Error", exc.detail),
                ),
            )
        after = row_counts(url)
        losses = [x for x in compare_row_counts(before, after) if x.after < x.before]
        if losses and not (revision.data_change or head in exempt):
            return CheckOutcome(
                head,
                failure=labelled(
                    f"downgrade -1 from head {head} loses rows",
                    ("Revision", revision.describe()),
                    ("Downgraded to", target),
                    ("Tables", describe_counts(losses)),
                    help=f"a rollback must not destroy data written since the deploy: fix downgrade() in "
                    f"{revision.path.name}",
                ),
            )
        seeded = template.seed.describe() if template.seed else "none"
        return CheckOutcome(head, notes=(f"rows before: {before}", f"rows after: {after}", f"seeded: {seeded}"))


# ---------------------------------------------------------------------------------------------
# Lint: squawk on each revision's offline SQL


@dataclass(frozen=True)
class LintFinding:
    revision: str
    rule: str
    statement: str
    message: str
    help: str
    line: int

    def describe(self) -> str:
        return labelled(
            f"{self.rule} in {self.revision}",
            ("Revision", self.revision),
            ("Rule", self.rule),
            ("Statement", self.statement),
            ("Problem", self.message),
            help=self.help,
        )


def squawk_binary() -> str:
    beside = Path(sys.executable).parent / "squawk"
    if beside.exists():
        return str(beside)
    found = shutil.which("squawk")
    if not found:
        raise MigrationError("squawk not found: pip install squawk-cli (it provides the `squawk` command)")
    return found


def _statement_at(text: str, line: int) -> str:
    """The whole statement that contains 0-based `line` (alembic ends statements with ';' + blank line)."""
    offset = sum(len(x) + 1 for x in text.split("\n")[:line])
    start = text.rfind(";", 0, offset) + 1
    end = text.find(";", offset)
    chunk = text[start : end + 1 if end >= 0 else len(text)]
    return " ".join(" ".join(x for x in chunk.splitlines() if not x.strip().startswith("--")).split())


def lint(
    revision_sql: dict[str, str],
    *,
    gating: Sequence[str] = DEFAULT_LINT_RULES,
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    pg_version: str | None = None,
) -> tuple[dict[str, list[LintFinding]], dict[str, list[LintFinding]]]:
    """Run squawk once over every revision's SQL. Returns (gating findings, other findings) per revision.

    squawk honours `-- squawk-ignore rule` comments itself; `exclude` rules are never reported.
    """
    gate = (set(gating) | set(include)) - set(exclude)
    found: dict[str, list[LintFinding]] = {rev: [] for rev in revision_sql}
    other: dict[str, list[LintFinding]] = {rev: [] for rev in revision_sql}
    if not revision_sql:
        return found, other
    with tempfile.TemporaryDirectory(prefix="opsverify-squawk-") as tmp:
        files: dict[str, str] = {}
        for i, (rev, text) in enumerate(revision_sql.items()):
            path = Path(tmp) / f"{i:04d}_{re.sub(r'[^A-Za-z0-9_]', '_', rev)}.sql"
            path.write_text(text, encoding="utf-8")
            files[path.name] = rev
        argv = [squawk_binary(), "--reporter", "json", "--no-error-on-unmatched-pattern"]
        if pg_version:
            argv += ["--pg-version", pg_version]
        if exclude:
            argv += ["--exclude", ",".join(exclude)]
        if include:
            argv += ["--include", ",".join(include)]
        argv += sorted(str(Path(tmp) / name) for name in files)
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, cwd=tmp, stdin=subprocess.DEVNULL
        )
        try:
            results = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            raise MigrationError(
                labelled(
                    "squawk did not produce JSON",
                    ("Exit code", proc.returncode),
                    ("Output", (proc.stderr or proc.stdout)[-800:]),
                )
            ) from None
    for item in results:
        owner = files.get(Path(str(item.get("file", ""))).name)
        if owner is None:
            continue
        text = revision_sql[owner]
        finding = LintFinding(
            revision=owner,
            rule=str(item.get("rule_name", "?")),
            statement=_statement_at(text, int(item.get("line", 0))),
            message=str(item.get("message", "")),
            help=str(item.get("help") or ""),
            line=int(item.get("line", 0)) + 1,
        )
        (found if finding.rule in gate else other)[owner].append(finding)
    return found, other


# ---------------------------------------------------------------------------------------------
# Drift: autogenerate between the database at head and the models


def load_metadata(spec: str) -> Any:
    """`package.module:attr` (importable from the repo root) or `path/to/models.py:attr`."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise MigrationError(f"migrations.metadata = {spec!r}: expected 'module:attr'")
    if module_name.endswith(".py"):
        path = Path(module_name) if Path(module_name).is_absolute() else REPO_ROOT / module_name
        spec_obj = importlib.util.spec_from_file_location(f"opsverify_models_{path.stem}", path)
        if spec_obj is None or spec_obj.loader is None:
            raise MigrationError(f"migrations.metadata: cannot load {path}")
        module = importlib.util.module_from_spec(spec_obj)
        spec_obj.loader.exec_module(module)
    else:
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        module = importlib.import_module(module_name)
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise MigrationError(
            f"migrations.metadata = {spec!r}: {module_name} has no attribute {attr}"
        ) from None
    return getattr(obj, "metadata", obj)


def drift(url: str, metadata: Any) -> tuple[list[Any], str]:
    """compare_metadata between the database and the models: (diffs, the operations as alembic code)."""
    from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(_url_for_sqlalchemy(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": False}
            )
            diffs = compare_metadata(context, metadata)
            upgrade_ops = produce_migrations(context, metadata).upgrade_ops
            code = render_python_code(upgrade_ops) if diffs and upgrade_ops is not None else ""
    finally:
        engine.dispose()
    code = "\n".join(x.strip() for x in code.splitlines() if x.strip() and not x.strip().startswith("# ###"))
    return list(diffs), code


# ---------------------------------------------------------------------------------------------
# Lock waits while a migration runs


@dataclass(frozen=True)
class LockWait:
    pid: int
    waited_ms: float
    mode: str
    relation: str
    query: str
    blocked_by: tuple[int, ...]
    blocker_queries: tuple[str, ...]

    def describe(self) -> str:
        blockers = "; ".join(f"{p}: {q}" for p, q in zip(self.blocked_by, self.blocker_queries, strict=False))
        return (
            f"pid {self.pid} waited {self.waited_ms:.0f} ms for {self.mode} on {self.relation or '?'}: "
            f"{' '.join(self.query.split())[:200]} (blocked by {blockers or '?'})"
        )


_LOCK_SAMPLE = """
SELECT l.pid,
       extract(epoch FROM (now() - coalesce(l.waitstart, a.state_change))) * 1000,
       l.mode, coalesce(l.relation::regclass::text, l.locktype), coalesce(a.query, ''),
       pg_blocking_pids(l.pid),
       ARRAY(SELECT coalesce(b.query, '') FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(l.pid)))
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid()
"""


class LockSampler:
    """Samples pg_locks / pg_stat_activity every `interval_s` and keeps each waiter's longest wait."""

    def __init__(self, url: str, interval_s: float = 0.05, max_duration_s: float = 600.0) -> None:
        self.url = _url_for_libpq(url)
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.samples = 0
        self.errors: list[str] = []
        self._waits: dict[tuple[int, str], LockWait] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lock-sampler", daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, application_name="opsverify-lock-sampler"
            ) as conn:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    for pid, waited, mode, relation, query, blockers, blocker_queries in conn.execute(
                        _LOCK_SAMPLE
                    ):
                        key = (int(pid), str(query))
                        wait = LockWait(
                            int(pid),
                            float(waited or 0),
                            str(mode),
                            str(relation),
                            str(query),
                            tuple(blockers or ()),
                            tuple(blocker_queries or ()),
                        )
                        if key not in self._waits or wait.waited_ms > self._waits[key].waited_ms:
                            self._waits[key] = wait
                    self.samples += 1
                    self._stop.wait(self.interval_s)
        except psycopg.Error as exc:
            self.errors.append(str(exc).strip().splitlines()[0])

    @property
    def waits(self) -> list[LockWait]:
        return sorted(self._waits.values(), key=lambda w: -w.waited_ms)

    @property
    def longest_ms(self) -> float:
        return max((w.waited_ms for w in self._waits.values()), default=0.0)


@dataclass(frozen=True)
class OnlineUpgrade:
    """An upgrade run while something else (a load) used the database, with what it made others wait."""

    seconds: float
    error: StepFailed | None
    waits: list[LockWait]
    samples: int
    sampler_errors: list[str]
    load: Any = None
    load_error: BaseException | None = None

    @property
    def longest_wait_ms(self) -> float:
        return max((w.waited_ms for w in self.waits), default=0.0)


def online_upgrade(
    tree: MigrationTree,
    url: str,
    destination: str,
    load: Callable[[], Any],
    *,
    warmup_s: float = 3.0,
    interval_s: float = 0.05,
    timeout_s: float = 300.0,
) -> OnlineUpgrade:
    """Start `load()` in a thread, let it warm up, upgrade while sampling lock waits, wait for the load.

    `load` must be bounded (a locust run with a duration); `timeout_s` bounds the wait for it.
    """
    box: dict[str, Any] = {}

    def run_load() -> None:
        try:
            box["result"] = load()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run_load, name="migration-load", daemon=True)
    thread.start()
    thread.join(timeout=warmup_s)
    error: StepFailed | None = None
    started = time.monotonic()
    with LockSampler(url, interval_s=interval_s, max_duration_s=timeout_s) as sampler:
        try:
            tree.upgrade(url, destination)
        except StepFailed as exc:
            error = exc
        # One more interval so a wait that ends with the upgrade is sampled at its longest.
        time.sleep(interval_s)
    seconds = time.monotonic() - started
    thread.join(timeout=timeout_s)
    if thread.is_alive():
        box.setdefault("error", MigrationError(f"the load did not finish within {timeout_s:.0f} s"))
    return OnlineUpgrade(
        seconds, error, sampler.waits, sampler.samples, sampler.errors, box.get("result"), box.get("error")
    )
