"""Results: locust's response-time histogram read back, percentiles by locust's own algorithm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Percentiles shown in the stats table (locust's CSV columns use the same set).
TABLE_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


# Results


def bucket_ms(response_time_ms: float) -> int:
    """Locust's histogram key for a response time (~2 significant digits): 147 -> 150."""
    if response_time_ms < 100:
        return round(response_time_ms)
    if response_time_ms < 1000:
        return int(round(response_time_ms, -1))
    if response_time_ms < 10000:
        return int(round(response_time_ms, -2))
    return int(round(response_time_ms, -3))


def histogram_percentile(histogram: Mapping[int, int], samples: int, percent: float) -> int:
    """Locust's `calculate_response_time_percentile`, percent in 0..1 (same walk, same answer)."""
    wanted = int(samples * percent)
    processed = 0
    for response_time in sorted(histogram, reverse=True):
        processed += histogram[response_time]
        if samples - processed <= wanted:
            return response_time
    return 0


@dataclass(frozen=True)
class EndpointStats:
    """One request name (`GET /api/items`) or the total, as locust measured it."""

    name: str
    count: int
    failures: int
    count_5xx: int
    total_ms: float
    min_ms: float
    max_ms: float
    # Response-time histogram, keys bucketed by locust (see bucket_ms).
    histogram: dict[int, int] = field(default_factory=dict, repr=False)
    # Requests without a response time (locust's num_none_requests), not in the histogram.
    none_count: int = 0
    first_s: float | None = None
    last_s: float | None = None
    # Wall time the rps is computed over (locust: first to last request of the whole run).
    window_s: float = 0.0

    @property
    def timed(self) -> int:
        return self.count - self.none_count

    @property
    def avg_ms(self) -> float:
        return self.total_ms / self.timed if self.timed else 0.0

    @property
    def median_ms(self) -> float:
        if not self.histogram:
            return 0.0
        median = float(histogram_percentile(self.histogram, self.timed, 0.5))
        # As locust does: a bucketed median never lies outside the exact min/max.
        return min(max(median, self.min_ms), self.max_ms)

    def percentile_ms(self, percent: float) -> float:
        """p(percent), percent in 0..100, from locust's histogram."""
        if not self.histogram:
            return 0.0
        return float(histogram_percentile(self.histogram, self.timed, percent / 100.0))

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.count if self.count else 0.0

    @property
    def ratio_5xx(self) -> float:
        return self.count_5xx / self.count if self.count else 0.0

    @property
    def rps(self) -> float:
        return self.count / self.window_s if self.window_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "failures": self.failures,
            "count_5xx": self.count_5xx,
            "fail_ratio": round(self.fail_ratio, 6),
            "avg_ms": round(self.avg_ms, 2),
            "median_ms": self.median_ms,
            "min_ms": round(self.min_ms, 2),
            "max_ms": round(self.max_ms, 2),
            **{f"p{p:g}_ms": self.percentile_ms(p) for p in TABLE_PERCENTILES},
            "rps": round(self.rps, 3),
        }


def endpoint_stats_from_locust(
    name: str,
    entry: Mapping[str, Any],
    status_5xx: Mapping[str, int] | None = None,
    window_s: float | None = None,
) -> EndpointStats:
    """An EndpointStats from one entry of locust's JSON (`StatsEntry.serialize()`)."""
    histogram = {int(k): int(v) for k, v in (entry.get("response_times") or {}).items()}
    first = entry.get("start_time")
    last = entry.get("last_request_timestamp")
    if name == "total" and status_5xx is not None:
        count_5xx = sum(status_5xx.values())
    else:
        count_5xx = int((status_5xx or {}).get(name, 0))
    if window_s is None:
        window_s = float(last - first) if first and last else 0.0
    return EndpointStats(
        name=name,
        count=int(entry.get("num_requests") or 0),
        failures=int(entry.get("num_failures") or 0),
        count_5xx=count_5xx,
        total_ms=float(entry.get("total_response_time") or 0.0),
        min_ms=float(entry.get("min_response_time") or 0.0),
        max_ms=float(entry.get("max_response_time") or 0.0),
        histogram=histogram,
        none_count=int(entry.get("num_none_requests") or 0),
        first_s=float(first) if first else None,
        last_s=float(last) if last else None,
        window_s=window_s,
    )


def merge_stats(name: str, parts: Sequence[EndpointStats], window_s: float) -> EndpointStats:
    """The total row: locust's 'Aggregated' is the sum of the entries, histograms added."""
    histogram: dict[int, int] = {}
    for part in parts:
        for key, value in part.histogram.items():
            histogram[key] = histogram.get(key, 0) + value
    firsts = [p.first_s for p in parts if p.first_s]
    lasts = [p.last_s for p in parts if p.last_s]
    timed = [p for p in parts if p.count]
    return EndpointStats(
        name=name,
        count=sum(p.count for p in parts),
        failures=sum(p.failures for p in parts),
        count_5xx=sum(p.count_5xx for p in parts),
        total_ms=sum(p.total_ms for p in parts),
        min_ms=min((p.min_ms for p in timed), default=0.0),
        max_ms=max((p.max_ms for p in timed), default=0.0),
        histogram=histogram,
        none_count=sum(p.none_count for p in parts),
        first_s=min(firsts) if firsts else None,
        last_s=max(lasts) if lasts else None,
        window_s=window_s,
    )


@dataclass(frozen=True)
class HistoryPoint:
    """One row of locust's stats history for the total ('Aggregated'): a 10 s sliding window."""

    t_s: float
    users: int
    rps: float
    fail_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class FailureLine:
    """One row of locust's failures CSV: what went wrong, where, how often."""

    name: str
    error: str
    occurrences: int
