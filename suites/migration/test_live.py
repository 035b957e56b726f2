"""After a deploy the target's database is at head (`alembic current` == head), checked read-only."""

from __future__ import annotations

import pytest

from opsverify.migration import MigrationTree, current_heads, labelled
from opsverify.session import OpsSession
from opsverify.target import Target

pytestmark = [pytest.mark.smoke, pytest.mark.migration]


def test_target_database_at_head(migration_tree: MigrationTree, ops: OpsSession, target: Target) -> None:
    """Runbook: `alembic current` after `upgrade head`; code at head on a database behind it breaks."""
    if not target.database_url:
        env = ops.profile.database.url_env
        pytest.skip(
            f"target database unknown: export {env}"
            if env
            else "target database unknown: set database.url_env = 'ENV_VAR' in the profile and export it"
        )
    current = current_heads(target.database_url, read_only=True)
    assert current == migration_tree.heads, labelled(
        "the target's database is not at head",
        ("Expected (head)", ", ".join(migration_tree.heads)),
        ("Got (alembic current)", ", ".join(current) or "base (no alembic_version)"),
        help="run `alembic upgrade head` before sending traffic",
    )
