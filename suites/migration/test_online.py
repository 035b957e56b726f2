"""`alembic upgrade head` on a live service: traffic keeps flowing and nothing queues on a lock.

Runbook: "alembic upgrade head always before traffic" — in practice traffic never stops, so the
upgrade must not make it wait. Measured from pg_locks / pg_stat_activity, not guessed.
"""

from __future__ import annotations

import contextlib

import pytest

from opsverify.migration import MigrationTree, TemplateChain, TemplateUnavailable, labelled, online_upgrade
from opsverify.perf import LoadResult, LoadSpec, run_locust, stats_table_html
from opsverify.perf.thresholds import evaluate, parse_thresholds
from opsverify.session import OpsSession

pytestmark = [pytest.mark.migration, pytest.mark.perf]

WARMUP_S = 3.0


def test_online_upgrade_under_load(
    migration_tree: MigrationTree,
    ops: OpsSession,
    seeded_chain: TemplateChain,
    reference_service_factory,
    figures,
    report_extra,
) -> None:
    """The service at head-1 under load while head is applied: error rate, p95 and lock waits hold."""
    profile = ops.profile
    if not ops.owns_target:
        pytest.skip(
            "the online upgrade needs a service the suite starts itself at head-1 (reference profile)"
        )
    heads = migration_tree.heads
    if len(heads) != 1 or not migration_tree.revisions[heads[0]].parents:
        pytest.skip(f"needs one head with a parent to start from (heads: {', '.join(heads)})")
    head = heads[0]
    previous = migration_tree.revisions[head].parents
    perf = profile.perf
    duration = ops.perf_duration or perf.duration_s
    with contextlib.ExitStack() as stack:
        try:
            dbname, _template = stack.enter_context(seeded_chain.clone(previous))
        except TemplateUnavailable as exc:
            pytest.skip(f"no seeded database at head-1: {exc}")
        url = seeded_chain.server.url(dbname)
        service = stack.enter_context(reference_service_factory(database_url=url, name="migration-online"))
        spec = LoadSpec(
            locustfile=profile.relative_path(perf.locustfile),
            host=service.base_url,
            users=ops.perf_users or perf.users,
            spawn_rate=ops.perf_spawn_rate or perf.spawn_rate,
            duration_s=max(duration, WARMUP_S + 2),
        )
        out_dir = ops.run_dir / "migration-online"
        outcome = online_upgrade(
            migration_tree, url, head, lambda: run_locust(spec, out_dir), warmup_s=WARMUP_S
        )
    load: LoadResult | None = outcome.load
    figures.record(
        "migration_lock_wait_ms",
        outcome.longest_wait_ms,
        unit="ms",
        budget=profile.migrations.lock_timeout_ms,
    )
    report_extra.text("lock waits", "\n".join(w.describe() for w in outcome.waits[:20]) or "none")
    if load is not None:
        report_extra.html(stats_table_html(load))
    context = (("Revision", f"{', '.join(previous)} -> {head}"), ("Upgrade took", f"{outcome.seconds:.2f} s"))
    assert outcome.error is None, labelled(
        "upgrade head failed while the service was under load",
        *context,
        ("Error", outcome.error.detail if outcome.error else ""),
    )
    assert outcome.load_error is None and load is not None, labelled(
        "the load did not run", *context, ("Error", outcome.load_error)
    )
    assert outcome.samples > 0 and not outcome.sampler_errors, labelled(
        "lock waits could not be sampled", ("Errors", "\n".join(outcome.sampler_errors) or "no samples")
    )
    failures = []
    if outcome.longest_wait_ms > profile.migrations.lock_timeout_ms:
        failures.append(
            f"lock wait {outcome.longest_wait_ms:.0f} ms > migrations.lock_timeout_ms = "
            f"{profile.migrations.lock_timeout_ms} ms\n  "
            + "\n  ".join(w.describe() for w in outcome.waits[:5])
        )
    for threshold in parse_thresholds(perf.thresholds):
        verdict = evaluate(threshold, load.endpoint(threshold.scope), run=load.describe())
        if not verdict.passed:
            failures.append(verdict.reason)
    assert not failures, labelled(
        f"upgrade to {head} under load broke its budgets",
        *context,
        (
            "Lock waits sampled",
            f"{outcome.samples} samples every 50 ms, longest {outcome.longest_wait_ms:.0f} ms",
        ),
        ("Broken", "\n".join(failures)),
        help="take long locks in small steps: lock_timeout + retries, batches, CONCURRENTLY, "
        "NOT VALID then VALIDATE",
    )
