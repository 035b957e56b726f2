"""Database runbook, "Backup Verification — weekly restore test": restore to staging, run smoke tests,
verify data integrity, document results. One check per step, in the order an operator would do them;
a failed step fails its own check and the steps after it are skipped naming it."""

from __future__ import annotations

import pytest

from fixtures.dr import DrSession, redact_lines, require_mode, step
from opsverify.dr import human_age, human_bytes

pytestmark = pytest.mark.dr


def test_backup_taken(dr: DrSession, figures, report_extra) -> None:
    """Runbook: `pg_dump ... > backup.sql` / backup.sh — without a backup there is nothing to restore."""
    backup = step(dr.run.backup, "backup")
    figures.record("backup_bytes", backup.bytes, unit=" B")
    report_extra.text("backup", f"{backup.origin}: {backup.path.name}, {human_bytes(backup.bytes)}, "
                                f"taken {backup.taken_at.isoformat(timespec='seconds')}; source: {dr.describe_source}")
    assert backup.bytes > 0, f"backup {backup.path.name} ({backup.origin}) is empty"


def test_archive_reads_to_the_end(dr: DrSession, report_extra) -> None:
    """backup-verify.sh: a backup tool's exit code is not proof; the archive must parse and read to its end."""
    report = step(dr.run.archive, "archive")
    report_extra.text("archive", report.describe())


def test_restore_completes(dr: DrSession, figures, report_extra) -> None:
    """restore.sh into a new throwaway database, stopping at the first error (never a half restore)."""
    restored = step(dr.run.restore, "restore")
    figures.record("restore_s", round(restored.elapsed_s, 3), unit=" s")
    report_extra.text("restore", f"{restored.how}: {restored.elapsed_s:.1f} s, {restored.tables_loaded} tables loaded")


def test_restored_copy_matches_source(dr: DrSession, report_extra) -> None:
    """Verify data integrity: every table's rows and content, sequences, constraints, indexes and schema
    of the restored copy equal the source's at backup time (hashes computed in the server)."""
    require_mode(dr, "fresh", "newest-backup mode: no source snapshot to compare; see revision/invariant checks")
    source = step(dr.run.source_manifest, "integrity")
    restored = step(dr.run.restored_manifest, "restored_manifest")
    report_extra.text(
        "manifests",
        f"source:   {source.describe()} [{source.digest()}] in {source.elapsed_s:.1f} s\n"
        f"restored: {restored.describe()} [{restored.digest()}] in {restored.elapsed_s:.1f} s",
    )
    problems = step(dr.run.integrity_problems, "integrity")
    assert not problems, (
        f"restored copy differs from the source at backup time ({dr.run.restore().how}):\n{redact_lines(problems)}\n"
        f"expected: {source.describe()}\ngot:      {restored.describe()}\n"
        f"what to do: the backup or restore procedure loses data — inspect backup.command / backup.restore_command"
    )


def test_restored_revision_known(dr: DrSession) -> None:
    """The restored alembic_version is a revision of this migration tree (it is this service's database)."""
    require_mode(dr, "newest", "fresh mode: the restored copy is compared to its source instead")
    if dr.run.plan.alembic_ini is None:
        pytest.skip("no migrations.alembic_ini in the profile (nor --alembic-ini): revision not checked")
    restored = step(dr.run.restore, "revision")
    problem = dr.run.revision_problem(restored.database_url)
    assert problem is None, f"{problem}\nbackup: {dr.run.backup().path.name}"


def test_invariants_hold(dr: DrSession) -> None:
    """The profile's invariant queries (backup.invariants) hold on the restored data."""
    require_mode(dr, "newest", "fresh mode: the restored copy is compared to its source instead")
    if not dr.run.plan.invariants:
        pytest.skip("no backup.invariants in the profile")
    results = step(dr.run.invariants, "invariants")
    broken = [f"{r.query!r}: {r.detail}" for r in results if not r.ok]
    assert not broken, f"invariants broken on the restored database:\n{redact_lines(broken)}"


def test_restored_data_within_rpo(dr: DrSession, ops) -> None:
    """Data freshness: the newest row the backup holds (backup.freshness_query) is within RPO."""
    require_mode(dr, "newest", "fresh mode: the backup was just taken")
    query = dr.run.plan.freshness_query
    if not query:
        pytest.skip("no backup.freshness_query in the profile")
    from opsverify.dr import newest_data_at

    restored = step(dr.run.restore, "freshness")
    newest = newest_data_at(restored.database_url, query)
    assert newest is not None, f"backup.freshness_query returned no timestamp: {query}"
    import datetime as dt

    age = (dt.datetime.now(dt.UTC) - newest).total_seconds()
    budget = ops.profile.backup.rpo_s
    assert age <= budget, (f"newest data in the backup is {human_age(age)} old ({newest.isoformat()}), "
                           f"expected within RPO {human_age(budget)} (backup.rpo_s)")


def test_amcheck_clean(dr: DrSession, report_extra) -> None:
    """pg_amcheck: heap and B-tree pages of the restored copy are not corrupt."""
    step(dr.run.restore, "amcheck")
    if not dr.run.client.has("pg_amcheck"):
        pytest.skip(f"pg_amcheck not found ({' '.join(dr.run.client.argv('pg_amcheck'))}): corruption not checked")
    result = step(dr.run.amcheck, "amcheck")
    report_extra.text("pg_amcheck", result.output or "(clean)")
    assert result.ok, f"pg_amcheck found problems in the restored database ({result.elapsed_s:.1f} s):\n{result.output}"


def test_service_smoke_green_on_restore(dr: DrSession, report_extra) -> None:
    """Restore to staging, run smoke tests: the service starts on the restored database and answers."""
    outcome = step(dr.run.drill, "drill")
    report_extra.text("drill exchanges", "\n\n".join(outcome.exchanges))
    assert not outcome.failures, (
        f"service on the restored database ({outcome.base_url}) failed smoke "
        f"after {outcome.started_to_green_s:.1f} s:\n"
        + redact_lines([f"{k}: {v}" for k, v in outcome.failures.items()])
    )


def test_rto_within_budget(dr: DrSession, ops, figures) -> None:
    """Database RTO (30 min in the runbook): restore plus service start until smoke is green."""
    rto = step(dr.run.rto_s, "rto")
    budget = ops.profile.backup.rto_s
    figures.record("rto_s", round(rto, 3), unit=" s", budget=budget, warn_ratio=0.8)
    restored = dr.run.restore()
    assert rto <= budget, (
        f"RTO {rto:.1f} s over budget {budget:.0f} s (backup.rto_s): restore {restored.elapsed_s:.1f} s "
        f"+ service to smoke green {rto - restored.elapsed_s:.1f} s — restore with more jobs (backup.jobs) or "
        f"faster storage, or agree a realistic RTO"
    )


def test_rpo_within_budget(dr: DrSession, ops, figures) -> None:
    """Database RPO (1 min in the runbook): the newest backup is no older than the data you can lose."""
    require_mode(dr, "newest", "fresh mode: the drill took its backup just now; RPO is measured on --backup-dir")
    backup = step(dr.run.backup, "rpo")
    budget = ops.profile.backup.rpo_s
    age = backup.age_s
    figures.record("rpo_s", round(age, 3), unit=" s", budget=budget, warn_ratio=0.8)
    assert age <= budget, (
        f"newest backup {backup.path.name} is {human_age(age)} old "
        f"(taken {backup.taken_at.isoformat(timespec='seconds')} per its "
        f"{next((c.taken_from for c in backup.candidates if c.path == backup.path), 'time')}), expected within "
        f"RPO {human_age(budget)} (backup.rpo_s) — the backup job has stopped running or writes elsewhere"
    )
