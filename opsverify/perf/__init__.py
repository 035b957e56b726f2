"""The perf gate's engine: locust runs read back, thresholds judged, charts drawn, queries timed.

Modules: `runner` (locust as a subprocess), `stats` (histograms and percentiles), `thresholds`
(k6-style expressions), `charts` (report fragments), `queries` (query benchmarks).
"""

from opsverify.perf.charts import history_svg, stats_table_html, summary_fragment
from opsverify.perf.queries import QueryTiming, benchmark_query
from opsverify.perf.runner import (
    HOOKS_FILE,
    STARTUP_GRACE_S,
    LoadError,
    LoadResult,
    LoadSpec,
    LocustRun,
    locust_command,
    read_failures,
    read_history,
    read_results,
    request_key,
    run_locust,
    start_locust,
)
from opsverify.perf.stats import (
    TABLE_PERCENTILES,
    EndpointStats,
    FailureLine,
    HistoryPoint,
    bucket_ms,
    endpoint_stats_from_locust,
    histogram_percentile,
    merge_stats,
)

__all__ = [
    "HOOKS_FILE",
    "STARTUP_GRACE_S",
    "TABLE_PERCENTILES",
    "EndpointStats",
    "FailureLine",
    "HistoryPoint",
    "LoadError",
    "LoadResult",
    "LoadSpec",
    "LocustRun",
    "QueryTiming",
    "benchmark_query",
    "bucket_ms",
    "endpoint_stats_from_locust",
    "histogram_percentile",
    "history_svg",
    "locust_command",
    "merge_stats",
    "read_failures",
    "read_history",
    "read_results",
    "request_key",
    "run_locust",
    "start_locust",
    "stats_table_html",
    "summary_fragment",
]
