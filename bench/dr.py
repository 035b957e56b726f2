"""DR gate benchmark: the whole drill vs a bare `pg_dump -Fc` + `pg_restore -j2` of the same database.

    .venv/bin/python bench/dr.py                 # ≈1 GB database (slow: seeding alone takes minutes)
    .venv/bin/python bench/dr.py --size-mb 200   # quicker

Prints two ratios (issue 5's goals):
  gate / bare      the drill (backup + verify + restore + both manifests + amcheck + service drill +
                   source re-check) over bare dump + restore; goal <= 1.3
  fingerprint / pg_dump throughput   heap bytes per second hashed in the server vs dumped; goal >= 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsverify.config import load_profile
from opsverify.dr import (
    DrillPlan,
    DrillRun,
    PgClient,
    SmokeOutcome,
    diff_manifests,
    human_bytes,
    run_tool,
    take_manifest,
)
from opsverify.dr.service import smoke_on
from opsverify.reference import migrate_and_seed, running_reference_service
from opsverify.services import PostgresServer, choose_provider


def database_bytes(pg: PostgresServer, url: str) -> int:
    with pg.connect(url.rsplit("/", 1)[1]) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]


# The reference service's seed (reference_service/seed.py) with bigint arithmetic: its own
# `n * 7919` overflows integer above ~271k rows, and a 1 GB source needs millions.
SEED_BATCH_SQL = """
INSERT INTO items (name, sku, price_cents, category, created_at)
SELECT
    (ARRAY['Widget', 'Gadget', 'Gizmo', 'Sprocket', 'Bracket', 'Cable'])[1 + n %% 6]
        || ' ' || (ARRAY['Mini', 'Pro', 'Max', 'Lite', 'Plus', 'Classic', 'Eco'])[1 + (n / 6) %% 7]
        || ' ' || to_char(n, 'FM000000'),
    'SEED-' || to_char(n, 'FM00000000'),
    99 + (n * 7919) %% 99901,
    (ARRAY['widgets', 'gadgets', 'gizmos', 'sprockets', 'hardware', 'cables'])[1 + n %% 6],
    now() - make_interval(mins => ((n * 37) %% 525600)::int)
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n
ON CONFLICT (sku) DO NOTHING
"""
BATCH_ROWS = 1_000_000


def build_source(pg: PostgresServer, size_mb: int) -> str:
    """The reference schema seeded until the database is about size_mb."""
    name = pg.create_database()
    url = pg.url(name)
    migrate_and_seed(url, rows=0)
    base = database_bytes(pg, url)
    started = time.monotonic()
    target = size_mb * 1024 * 1024
    lo = 1
    with pg.connect(name) as conn:
        while database_bytes(pg, url) < target:
            conn.execute(SEED_BATCH_SQL, {"lo": lo, "hi": lo + BATCH_ROWS - 1})
            lo += BATCH_ROWS
            print(f"  seeded {lo - 1} rows: {human_bytes(database_bytes(pg, url))}", flush=True)
            if lo == 1 + BATCH_ROWS:  # after one batch we know the bytes per row: finish in one go
                per_row = (database_bytes(pg, url) - base) / BATCH_ROWS
                remaining = int((target - database_bytes(pg, url)) / per_row)
                if remaining > 0:
                    conn.execute(SEED_BATCH_SQL, {"lo": lo, "hi": lo + remaining - 1})
                    lo += remaining
                break
        conn.execute(
            "INSERT INTO outbox (item_id, event, payload, status) "
            "SELECT id, 'item.created', jsonb_build_object('id', id, 'sku', sku), 'sent' FROM items WHERE id % 10 = 0"
        )
        conn.execute("VACUUM ANALYZE")
    print(f"source: {lo - 1} items, {human_bytes(database_bytes(pg, url))} in {time.monotonic() - started:.0f} s",
          flush=True)
    return url


def bare(pg: PostgresServer, client: PgClient, url: str, workdir: Path, jobs: int) -> tuple[float, float]:
    out = workdir / "bare.dump"
    dump = run_tool([*client.argv("pg_dump"), "-Fc", "-f", str(out), "--dbname", client.dsn(url)],
                    env=client.env(url), timeout_s=7200)
    assert dump.returncode == 0, dump.tail()
    with pg.throwaway_database() as target:
        restore = run_tool([*client.argv("pg_restore"), "-j", str(jobs), "--no-owner", "--dbname", client.dsn(target),
                            str(out)], env=client.env(target), timeout_s=7200)
        assert restore.returncode == 0, restore.tail()
    out.unlink()
    return dump.elapsed_s, restore.elapsed_s


def gate(pg: PostgresServer, redis_url: str, client: PgClient, url: str, workdir: Path, jobs: int) -> dict[str, float]:
    profile = load_profile("reference")
    times: dict[str, float] = {}
    with contextlib.ExitStack() as stack:

        def smoke(restored_url: str) -> SmokeOutcome:
            started = time.monotonic()
            with running_reference_service(database_url=restored_url, redis_url=redis_url,
                                           log_path=workdir / "drill.log") as service:
                return smoke_on(profile, service.base_url, started)

        plan = DrillPlan(mode="fresh", workdir=workdir, jobs=jobs)
        run = DrillRun(plan, client, source_url=lambda: url,
                       new_database=lambda: stack.enter_context(pg.throwaway_database()), run_smoke=smoke)
        started = time.monotonic()
        for name, fn in (("backup", run.backup), ("verify", run.archive), ("restore", run.restore),
                         ("restored manifest", run.restored_manifest), ("integrity", run.integrity_problems),
                         ("amcheck", run.amcheck), ("drill", run.drill)):
            t0 = time.monotonic()
            fn()
            times[name] = time.monotonic() - t0
        t0 = time.monotonic()
        after = take_manifest(url, jobs=jobs, label="source manifest (after)")
        times["source re-check"] = time.monotonic() - t0
        times["total"] = time.monotonic() - started
        assert not run.integrity_problems(), run.integrity_problems()
        assert not diff_manifests(run.source_manifest(), after)
        assert not run.drill().failures, run.drill().failures
        times["source manifest"] = run.source_manifest().elapsed_s
        times["pg_dump in gate"] = run.backup().elapsed_s
        times["heap_bytes"] = float(run.source_manifest().heap_bytes)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="source database size (default 1024)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--services", default=os.environ.get("OPS_SERVICES", "local"))
    args = parser.parse_args()
    provider = choose_provider(args.services)
    pg, rd = provider.start()
    try:
        client = PgClient(pg)
        url = build_source(pg, args.size_mb)
        with tempfile.TemporaryDirectory(prefix="opsverify-bench-dr-") as tmp:
            # Bare before and after the gate, averaged: neither side gets only a cold or only a warm cache.
            first = bare(pg, client, url, Path(tmp), args.jobs)
            times = gate(pg, rd.url(), client, url, Path(tmp), args.jobs)
            second = bare(pg, client, url, Path(tmp), args.jobs)
        dump_s, restore_s = (first[0] + second[0]) / 2, (first[1] + second[1]) / 2
        print(f"bare runs: dump {first[0]:.1f} / {second[0]:.1f} s, restore {first[1]:.1f} / {second[1]:.1f} s")
        bare_s = dump_s + restore_s
        heap = times.pop("heap_bytes")
        print(f"\nbare pg_dump -Fc {dump_s:.1f} s + pg_restore -j{args.jobs} {restore_s:.1f} s = {bare_s:.1f} s")
        print("gate steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
        # Fingerprint alone, measured outside the overlap with pg_dump.
        fp_tp = heap / times["source re-check"]
        dump_tp = heap / dump_s
        print(f"fingerprint {human_bytes(fp_tp)}/s vs pg_dump {human_bytes(dump_tp)}/s of heap "
              f"({human_bytes(heap)})")
        print(f"RATIO gate/bare = {times['total'] / bare_s:.2f} (goal <= 1.3)")
        print(f"RATIO fingerprint/pg_dump throughput = {fp_tp / dump_tp:.2f} (goal >= 2)")
    finally:
        with contextlib.suppress(Exception):
            pg.drop_all_created()
        provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
