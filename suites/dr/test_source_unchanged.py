"""The drill never writes to what it protects: the source database (or the backup directory) is the
same after the gate as before it. Runs last."""

from __future__ import annotations

import pytest

from fixtures.dr import DrSession, redact_lines, step
from opsverify.dr import diff_manifests, dir_listing

pytestmark = pytest.mark.dr


def test_source_never_written(dr: DrSession) -> None:
    """Safety: a restore drill that changed production would be worse than no drill."""
    if dr.mode == "newest":
        step(dr.run.backup, "source")
        assert dr.backup_dir is not None and dr.run.source_listing is not None
        now = dir_listing(dr.backup_dir)
        before = dr.run.source_listing
        changed = sorted({r[0] for r in set(before) ^ set(now)})
        assert not changed, f"backup directory {dr.backup_dir} changed during the drill: {', '.join(changed[:10])}"
        return
    before = step(dr.run.source_manifest, "source")
    after = dr.source_manifest_now()
    problems = diff_manifests(before, after, expected_name="before", got_name="after")
    assert not problems, f"the source changed during the drill ({dr.describe_source}):\n{redact_lines(problems)}"
