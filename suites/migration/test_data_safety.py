"""Rows survive migrations both ways: what production holds before a deploy is there after it.

Runbook: "downgrade -1 only if reversible and data-safe".
"""

from __future__ import annotations

import pytest

from opsverify.migration import Revision, TemplateChain, downgrade_keeps_rows, upgrade_keeps_rows
from opsverify.session import OpsSession

pytestmark = pytest.mark.migration


def test_upgrade_keeps_rows(
    rev: Revision, ops: OpsSession, seeded_chain: TemplateChain, report_extra
) -> None:
    """An upgrade that drops or duplicates rows (or fails on real rows) is an outage with data loss."""
    exempt = rev.data_change or rev.id in ops.profile.migrations.data_changes
    outcome = upgrade_keeps_rows(seeded_chain, rev.id, exempt=exempt)
    if outcome.notes:
        report_extra.text("rows", "\n".join(outcome.notes))
    if outcome.skip:
        pytest.skip(outcome.skip)
    assert outcome.failure is None, outcome.failure


def test_downgrade_keeps_rows(ops: OpsSession, seeded_chain: TemplateChain, report_extra) -> None:
    """`downgrade -1` is the rollback of a bad deploy; it must not take the day's data with it."""
    settings = ops.profile.migrations
    outcome = downgrade_keeps_rows(
        seeded_chain, irreversible=settings.irreversible, exempt=settings.data_changes
    )
    if outcome.notes:
        report_extra.text("rows", "\n".join(outcome.notes))
    if outcome.skip:
        pytest.skip(outcome.skip)
    assert outcome.failure is None, outcome.failure
