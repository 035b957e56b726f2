"""The migration tree: alembic's ScriptDirectory parsed once, revisions, and steps run in-process.

Alembic runs in this process through its own API (Config, ScriptDirectory, EnvironmentContext,
the same calls `alembic.command` makes), with the ScriptDirectory parsed once per tree. Each
throwaway database URL reaches the project's env.py three ways: `sqlalchemy.url`,
`config.attributes["connection"]` (an open SQLAlchemy Connection) and env `DATABASE_URL`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsverify.migration.dbsession import DbSession
from opsverify.migration.errors import MigrationError, StepFailed, labelled
from opsverify.migration.lint import extract_revision_sql
from opsverify.migration.runtime import _database_url_env, _url_for_sqlalchemy

MAX_REVISION_SLUG = 40


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

    def describe(self) -> str:
        return f"{self.id} ({self.doc or 'no message'}) {self.path.name}"


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
