"""Drift: autogenerate between the database at head and the models."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from opsverify.config import REPO_ROOT
from opsverify.migration.errors import MigrationError
from opsverify.migration.runtime import _url_for_sqlalchemy

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
