"""Each revision's SQL passes squawk's migration-safety rules (locks, rewrites, breaking renames).

Runbook: "indexes off peak, concurrently"; "dry-run / migration history checked in CI".
"""

from __future__ import annotations

import pytest

from opsverify.migration import Revision, StepFailed

pytestmark = pytest.mark.migration


def test_revision_sql_passes_lint(rev: Revision, offline_sql, lint_report, figures, report_extra) -> None:
    """A blocking index build or a NOT NULL column without default takes production down mid-deploy."""
    figures.record("lint_findings", lint_report.total)
    if isinstance(offline_sql[rev.id], StepFailed):
        pytest.skip(
            f"no offline SQL for {rev.id} to lint (test_offline_sql_renders[{rev.test_id}] reports why)"
        )
    others = lint_report.other.get(rev.id, [])
    if others:
        report_extra.text("squawk findings that do not gate", "\n\n".join(f.describe() for f in others))
    findings = lint_report.gating.get(rev.id, [])
    assert not findings, (
        f"{len(findings)} squawk finding(s) in {rev.id} ({rev.path.name})\n\n"
        + "\n\n".join(f.describe() for f in findings)
        + "\n\nSilence a reviewed statement with `-- squawk-ignore <rule>` above it, or exclude the rule"
        " in migrations.lint_exclude."
    )
