"""Models one change ahead of the merge_valid tree: accounts.plan has no migration."""

import importlib.util
from pathlib import Path

import sqlalchemy as sa

# A fresh copy of the in-step models (loaded by path, so models.py itself stays untouched).
_spec = importlib.util.spec_from_file_location("merge_valid_models_copy", Path(__file__).with_name("models.py"))
assert _spec is not None and _spec.loader is not None
_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_models)

metadata = _models.metadata
_models.accounts.append_column(sa.Column("plan", sa.Text(), nullable=True))
