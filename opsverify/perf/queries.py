"""Query benchmarks (ingest runbook: "fail above 250 ms mean / 400 ms p95")."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from opsverify.errors import OpsError
from opsverify.redact import redact

# Query benchmarks (ingest runbook: "fail above 250 ms mean / 400 ms p95")


@dataclass(frozen=True)
class QueryTiming:
    name: str
    runs_ms: list[float]
    rows: int

    @property
    def mean_ms(self) -> float:
        return sum(self.runs_ms) / len(self.runs_ms) if self.runs_ms else 0.0

    @property
    def p95_ms(self) -> float:
        """Nearest-rank p95 of the timed runs (exact: there are only K of them)."""
        if not self.runs_ms:
            return 0.0
        ordered = sorted(self.runs_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def benchmark_query(
    database_url: str, name: str, sql: str, runs: int, *, timeout_s: float = 30.0
) -> QueryTiming:
    """Run `sql` once to warm up, then `runs` timed times, each in a READ ONLY transaction.

    The session is read-only (default_transaction_read_only) and every transaction is rolled
    back, so a benchmark can never change the target; a write in `sql` fails the benchmark.
    """
    import psycopg

    if runs < 1:
        raise OpsError(f"query benchmark {name!r}: runs must be >= 1")
    options = f"-c default_transaction_read_only=on -c statement_timeout={int(timeout_s * 1000)}"
    timings: list[float] = []
    rows = 0
    try:
        with psycopg.connect(database_url, options=options, connect_timeout=10, autocommit=False) as conn:
            for i in range(runs + 1):
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cur.execute(sql)  # type: ignore[arg-type]
                    rows = len(cur.fetchall()) if cur.description else cur.rowcount
                elapsed = (time.perf_counter() - started) * 1000.0
                conn.rollback()
                if i:  # run 0 warms caches and plans; the runbook's figures are steady state
                    timings.append(elapsed)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpsError(redact(f"query benchmark {name!r} failed: {message}")) from None
    return QueryTiming(name, timings, rows)
