"""The migration gate fails exactly the check that owns each broken tree, naming the revision.

Each run is a real `pytest suites -m migration ...` subprocess against the shared self-test
servers (tests/conftest.py). Budget for this file: about 3 minutes on 2 cores.
"""

from __future__ import annotations

import pytest

from opsverify.migration import extract_revision_sql, lint

TREES = "tests/data/migrations"
# The live check compares the *target's* database (the reference service) with the tree, and
# the online check has its own tests below; the broken trees are about the history itself.
OFFLINE = ("-m", "migration and not smoke and not perf")


def test_broken_tree_messages_carry_labelled_context(gates) -> None:
    run = gates(*OFFLINE, "--alembic-ini", f"{TREES}/two_heads/alembic.ini", "-k", "single_head or lint")
    run.assert_only_failed("test_single_head")
    message = run.message("test_single_head")
    assert "Heads:" in message and "b2000003" in message and "Help: alembic merge" in message, message
    assert run.summary["figures"]["migration_count"] == 3
    assert run.summary["figures"]["lint_findings"] == 0


def test_valid_merge_tree_passes_and_reports_its_lower_bound(gates) -> None:
    run = gates(*OFFLINE, "--target", f"{TREES}/merge_valid/profile_models.toml")
    run.assert_all_passed()
    assert "test_models_match_head" in " ".join(run.passed)
    skipped = [t for t in run.skipped if "test_stairway" in t]
    assert skipped == [t for t in run.outcomes if "test_stairway[b2000002" in t], run.outcomes
    assert "explicit lower bound" in run.message("test_stairway[b2000002")
    assert any("test_stairway[d4000005-merge" in t for t in run.passed), (
        "the merge revision must be checked and pass"
    )


def test_models_ahead_of_migrations_fail_drift(gates) -> None:
    run = gates(*OFFLINE, "--target", f"{TREES}/merge_valid/profile_drifted.toml", "-k", "models_match_head")
    run.assert_only_failed("test_models_match_head")
    assert "op.add_column('accounts', sa.Column('plan'" in run.message("test_models_match_head")


def test_reference_tree_passes_every_check_and_target_is_at_head(gates) -> None:
    run = gates("-m", "migration and not perf")
    run.assert_all_passed()
    assert "suites/smoke/test_dependencies.py::test_schema_at_migration_head" in run.passed
    assert len([t for t in run.passed if "test_stairway[" in t]) == 6


def test_live_check_fails_when_target_is_behind_the_tree(gates) -> None:
    # The reference service runs at 5a0e0006; a tree whose head is one revision further is ahead of it.
    run = gates("-m", "smoke and migration", "--alembic-ini", f"{TREES}/online_lock/alembic.ini")
    run.assert_only_failed("test_schema_at_migration_head")
    message = run.message("test_schema_at_migration_head")
    assert "heads ['bad00007']" in message and "got ['5a0e0006']" in message, message


def test_no_tree_skips_naming_both_ways_to_set_it(gates) -> None:
    run = gates(*OFFLINE, "--target", f"{TREES}/no_ini_profile.toml", "-k", "single_head or stairway")
    assert run.returncode == 0 and not run.failed, run.stdout[-2000:]
    message = run.message("test_single_head")
    assert "--alembic-ini" in message and "migrations.alembic_ini" in message, message


@pytest.mark.parametrize(
    ("tree", "expect_failure"),
    [("reference_service/alembic.ini", False), (f"{TREES}/online_lock/alembic.ini", True)],
    ids=["reference-tree-holds", "exclusive-lock-breaks-budget"],
)
def test_online_upgrade_under_load(gates, tree: str, expect_failure: bool) -> None:
    run = gates("-m", "migration and perf", "--alembic-ini", tree, "--perf-duration", "7")
    if not expect_failure:
        run.assert_all_passed()
        return
    run.assert_only_failed("test_online_upgrade_under_load")
    message = run.message("test_online_upgrade_under_load")
    assert (
        "bad00007" in message
        and "lock wait" in message
        and "> migrations.lock_timeout_ms = 2000 ms" in message
    )
    assert "AccessShareLock on items" in message, message


def test_revision_sql_is_cut_from_the_offline_script() -> None:
    script = (
        "SET lock_timeout = '5s';\n\nBEGIN;\n\n-- Running upgrade  -> a1\n\n"
        "CREATE TABLE t (id int);\n\nCOMMIT;\n\n"
        "BEGIN;\n\n-- Running upgrade a1 -> b2\n\nCREATE INDEX i ON t (id);\n\nCOMMIT;\n\n"
    )
    part = extract_revision_sql(script, "b2")
    assert part.startswith("SET lock_timeout = '5s';")
    assert "CREATE INDEX" in part and "CREATE TABLE" not in part


@pytest.mark.parametrize("ignored", [False, True], ids=["reported", "squawk-ignore-honoured"])
def test_squawk_ignore_comment_from_op_execute(ignored: bool) -> None:
    # What `op.execute("-- squawk-ignore ...")` followed by `op.create_index(...)` renders offline.
    comment = "-- squawk-ignore require-concurrent-index-creation;\n\n" if ignored else ""
    script = f"BEGIN;\n\n-- Running upgrade  -> a1\n\n{comment}CREATE INDEX i ON t (id);\n\nCOMMIT;\n\n"
    gating, _other = lint({"a1": extract_revision_sql(script, "a1")})
    rules = [f.rule for f in gating["a1"]]
    assert rules == ([] if ignored else ["require-concurrent-index-creation"]), rules
    if not ignored:
        assert gating["a1"][0].statement == "CREATE INDEX i ON t (id);"
