"""Secrets rotation: nothing OVERDUE or DUE_TODAY; DUE_SOON asks for attention."""

from __future__ import annotations

import datetime as dt

import pytest

from opsverify.session import OpsSession
from opsverify.smoke import rotation

pytestmark = pytest.mark.smoke


def test_no_secret_overdue_for_rotation(ops: OpsSession, figures, report_extra) -> None:
    """Office runbook daily check: `ops/secrets_rotation_schedule.yaml` has no OVERDUE/DUE_TODAY (OVERDUE is
    S0)."""
    path = rotation.schedule_path(ops.profile.rotation.schedule, ops.profile.relative_path)
    if path is None:
        pytest.skip(f"{ops.profile.name} names no rotation.schedule (or set {rotation.SCHEDULE_ENV})")
    try:
        entries = rotation.load_schedule(path)
    except rotation.ScheduleError as exc:
        pytest.fail(
            f"expected a readable rotation schedule, got: {exc} — fix the file (schema in README)",
            pytrace=False,
        )
    today = dt.date.today()
    verdicts = rotation.evaluate(entries, today, ops.profile.rotation.due_soon_days)
    report_extra.text("schedule", "\n".join(v.describe() for v in verdicts) or "(empty)")
    for soon in rotation.due_soon(verdicts):
        figures.attention(f"secret rotation {soon.describe()} — plan the rotation (office runbook: DUE_SOON)")
    late = rotation.failing(verdicts)
    assert not late, (
        f"expected no OVERDUE/DUE_TODAY entries in {path} on {today.isoformat()}, got: "
        + "; ".join(v.describe() for v in late)
        + " — rotate now; OVERDUE is an S0 security incident (office runbook)"
    )
