"""The models the code runs with match the schema the migrations build (no forgotten revision)."""

from __future__ import annotations

import pytest

from opsverify.migration import MigrationError, MigrationTree, TemplateChain, drift, labelled, load_metadata
from opsverify.session import OpsSession

pytestmark = pytest.mark.migration


def test_models_match_head(
    migration_tree: MigrationTree, ops: OpsSession, schema_chain: TemplateChain
) -> None:
    """A model change without a migration ships code that queries columns production does not have."""
    spec = ops.profile.migrations.metadata
    if not spec:
        pytest.skip(
            "no models to compare: set migrations.metadata = 'package.module:metadata' in the profile"
        )
    if ops.alembic_ini is not None and ops.profile.migrations.alembic_ini:
        # The profile's models describe the profile's tree, not the one given on the command line.
        pytest.skip(
            f"--alembic-ini replaces the profile's tree ({ops.profile.migrations.alembic_ini}); "
            f"migrations.metadata describes that tree, so there are no models for this one"
        )
    try:
        metadata = load_metadata(spec)
    except (MigrationError, ImportError) as exc:
        pytest.fail(f"migrations.metadata = {spec!r}: {exc}", pytrace=False)
    with schema_chain.clone(migration_tree.heads) as (dbname, _template):
        diffs, code = drift(schema_chain.server.url(dbname), metadata)
    assert not diffs, labelled(
        f"{len(diffs)} difference(s) between the models ({spec}) and the schema at head",
        ("Head", ", ".join(migration_tree.heads)),
        ("Operations autogenerate would add", code.strip()),
        help="alembic revision --autogenerate -m '...' (then review it)",
    )
