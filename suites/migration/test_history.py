"""The history itself: one head, it upgrades from nothing, every step goes down and up again.

Runbook: "alembic upgrade head always before traffic", "downgrade -1 only if reversible",
"migration history checked in CI and on staging".
"""

from __future__ import annotations

import pytest

from opsverify.migration import (
    MigrationTree,
    Revision,
    StepFailed,
    TemplateChain,
    current_heads,
    full_downgrade,
    labelled,
)
from opsverify.migration import stairway as run_stairway
from opsverify.services import PostgresServer
from opsverify.session import OpsSession

pytestmark = pytest.mark.migration


def test_single_head(migration_tree: MigrationTree, figures) -> None:
    """Two heads make `alembic upgrade head` refuse to run in the middle of a deploy."""
    figures.record("migration_count", len(migration_tree.revisions))
    heads = migration_tree.heads
    assert len(heads) == 1, labelled(
        f"the tree has {len(heads)} heads; `alembic upgrade head` needs exactly one",
        ("Heads", migration_tree.describe_heads()),
        help=f"alembic merge -m 'merge heads' {' '.join(heads)}",
    )


def test_upgrade_base_to_head(migration_tree: MigrationTree, postgres: PostgresServer) -> None:
    """A new environment (or a restored empty database) must reach head from nothing."""
    with postgres.throwaway_database() as url:
        try:
            migration_tree.upgrade(url, "heads")
        except StepFailed as exc:
            pytest.fail(
                labelled("upgrade base → head failed on an empty database", ("Details", exc)), pytrace=False
            )
        reached = current_heads(url)
    assert reached == migration_tree.heads, labelled(
        "upgrade base → head did not reach head",
        ("Expected", ", ".join(migration_tree.heads)),
        ("Got", ", ".join(reached) or "base"),
    )


def test_stairway(rev: Revision, ops: OpsSession, schema_chain: TemplateChain, report_extra) -> None:
    """Each revision goes up, down to its parent's exact schema, and up again: rollbacks are real."""
    outcome = run_stairway(
        schema_chain,
        rev.id,
        irreversible=ops.profile.migrations.irreversible,
        lowest=ops.profile.migrations.lowest,
    )
    if outcome.skip:
        pytest.skip(outcome.skip)
    assert outcome.failure is None, outcome.failure


def test_full_downgrade(
    migration_tree: MigrationTree, ops: OpsSession, schema_chain: TemplateChain, report_extra
) -> None:
    """Rolling all the way back (to the lowest allowed revision) works, step by step."""
    settings = ops.profile.migrations
    failure, notes = full_downgrade(schema_chain, irreversible=settings.irreversible, lowest=settings.lowest)
    report_extra.text("full downgrade", "\n".join(notes))
    assert failure is None, failure


def test_offline_sql_renders(rev: Revision, offline_sql, report_extra) -> None:
    """`alembic upgrade --sql` is what a DBA reviews before a deploy; every revision must render."""
    rendered = offline_sql[rev.id]
    if isinstance(rendered, StepFailed):
        pytest.fail(
            labelled(
                f"offline SQL for {rev.id} does not render",
                ("Revision", rev.describe()),
                ("Error", rendered.detail),
                help="guard online-only code with `if context.is_offline_mode():`",
            ),
            pytrace=False,
        )
    report_extra.text(f"upgrade --sql ({rev.id})", rendered)
    assert rendered.strip(), f"offline SQL for {rev.id} is empty"
