"""The queries the ingest runbook benchmarks stay within their mean and p95 budgets.

Runbook: `BENCH_FAIL_THRESHOLD_MS=250 BENCH_FAIL_P95_THRESHOLD_MS=400 python
scripts/benchmark_queries.py` — "fail above 250 ms mean / 400 ms p95". Each [[perf.queries]]
entry runs K times in read-only transactions on the target's database.
"""

from __future__ import annotations

import pytest

from opsverify.config import QueryBench
from opsverify.errors import OpsError
from opsverify.perf import benchmark_query
from opsverify.session import OpsSession
from opsverify.target import Target

pytestmark = pytest.mark.perf


def test_query_within_budget(query: QueryBench, ops: OpsSession, target: Target, report_extra) -> None:
    """A query that got slower than its budget makes ingest and reports lag behind."""
    if target.database_url is None:
        env = ops.profile.database.url_env
        where = (
            f"export {env}=postgresql://..." if env else "set database.url_env in the profile and export it"
        )
        pytest.skip(f"target database unknown: {where}")
    error = None
    try:
        timing = benchmark_query(target.database_url, query.name, query.sql, query.runs)
    except OpsError as exc:
        error = str(exc)
    if error is not None:  # failed outside the except block: no chained traceback in the report
        pytest.fail(
            f"{error}\n  query: {query.sql}\n  what to do: benchmarks run read-only; fix the SQL",
            pytrace=False,
        )
    runs = ", ".join(f"{ms:.1f}" for ms in timing.runs_ms)
    report_extra.text("timings (ms)", runs)
    context = (
        f"query {query.name!r}: mean {timing.mean_ms:.1f} ms, p95 {timing.p95_ms:.1f} ms "
        f"over {query.runs} runs "
        f"(+1 warm-up), {timing.rows} rows\n  sql: {query.sql}\n  runs (ms): {runs}"
    )
    assert timing.mean_ms <= query.mean_ms and timing.p95_ms <= query.p95_ms, (
        f"{context}\n  expected: mean <= {query.mean_ms:g} ms and p95 <= {query.p95_ms:g} ms\n"
        f"  what to do: EXPLAIN (ANALYZE, BUFFERS) the query on the target; look for a missing index or bloat"
    )
