"""The migration gate's engine: an alembic tree walked, stepped, rendered, linted and seeded.

Modules, one concept each: `tree` (the alembic tree, parsed once), `runtime` (how a throwaway
database reaches env.py), `dbsession` (steps on one connection), `schema` (snapshots), `seed`
(generic seeding, row counts), `templates` (one database per alembic state), `checks` (stairway,
full downgrade, rows kept), `lint` (squawk), `drift` (autogenerate), `locks` (online upgrade).
"""

from opsverify.migration.checks import CheckOutcome, downgrade_keeps_rows, full_downgrade, stairway, upgrade_keeps_rows
from opsverify.migration.dbsession import DbSession
from opsverify.migration.drift import drift, load_metadata
from opsverify.migration.errors import MigrationError, StepFailed, labelled
from opsverify.migration.lint import (
    DEFAULT_LINT_RULES,
    LINT_TIMEOUT_S,
    LintFinding,
    extract_revision_sql,
    lint,
    squawk_binary,
)
from opsverify.migration.locks import LockSampler, LockWait, OnlineUpgrade, online_upgrade
from opsverify.migration.schema import Schema, current_heads, schema_snapshot
from opsverify.migration.seed import RowLoss, SeedReport, compare_row_counts, describe_counts, row_counts, seed_database
from opsverify.migration.templates import TemplateChain, TemplateUnavailable
from opsverify.migration.tree import MAX_REVISION_SLUG, MigrationTree, Revision

__all__ = [
    "DEFAULT_LINT_RULES",
    "LINT_TIMEOUT_S",
    "MAX_REVISION_SLUG",
    "CheckOutcome",
    "DbSession",
    "LintFinding",
    "LockSampler",
    "LockWait",
    "MigrationError",
    "MigrationTree",
    "OnlineUpgrade",
    "Revision",
    "RowLoss",
    "Schema",
    "SeedReport",
    "StepFailed",
    "TemplateChain",
    "TemplateUnavailable",
    "compare_row_counts",
    "current_heads",
    "describe_counts",
    "downgrade_keeps_rows",
    "drift",
    "extract_revision_sql",
    "full_downgrade",
    "labelled",
    "lint",
    "load_metadata",
    "online_upgrade",
    "row_counts",
    "schema_snapshot",
    "seed_database",
    "squawk_binary",
    "stairway",
    "upgrade_keeps_rows",
]
