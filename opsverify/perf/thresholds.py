"""k6-style thresholds over a locust run: `p(95)<1000`, `rate<0.01`, never vacuous.

Profile syntax (`[perf.thresholds]`): a table from a scope — `total` or a request name as the
locustfile names it (`"GET /api/items"`) — to a list of expressions `METRIC OP VALUE`:

    avg, med, max        response time in ms (mean, median, maximum)
    p(N)                 N-th percentile response time in ms, 0 < N <= 100 (p(99.9) is fine)
    rate                 failure ratio 0..1 (locust failures: 4xx/5xx, connection errors)
    rate_5xx             share of responses with a 5xx status, 0..1
    rps                  requests per second over the run
    count                number of requests
    OP                   <  <=  >  >=  ==

Unlike k6 (grafana/k6#4283: a `rate` over zero samples passes), a threshold on a scope that
received no request at all fails with that reason — nothing measured is not "within budget".
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from opsverify.errors import OpsError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
METRICS = ("avg", "med", "max", "p(N)", "rate", "rate_5xx", "rps", "count")
# Metrics a running load can already break for good (k6 abortOnFail); count and rps can only be
# judged at the end of the run.
ABORTABLE = frozenset(("avg", "med", "max", "p", "rate", "rate_5xx"))
_EXPR = re.compile(
    r"^\s*(?P<metric>avg|med|max|rate_5xx|rate|rps|count|p\(\s*(?P<pct>\d+(?:\.\d+)?)\s*\))"
    r"\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*$"
)


class ThresholdSyntaxError(OpsError):
    """A threshold expression in the profile that cannot be read."""


class StatsLike(Protocol):
    """What a threshold reads (opsverify.perf.stats.EndpointStats has it all)."""

    name: str
    count: int
    failures: int
    count_5xx: int
    max_ms: float

    @property
    def avg_ms(self) -> float: ...
    @property
    def median_ms(self) -> float: ...
    def percentile_ms(self, percent: float) -> float: ...
    @property
    def fail_ratio(self) -> float: ...
    @property
    def ratio_5xx(self) -> float: ...
    @property
    def rps(self) -> float: ...


@dataclass(frozen=True)
class Threshold:
    scope: str  # "total" or a request name, e.g. "GET /api/items"
    metric: str  # avg | med | max | p | rate | rate_5xx | rps | count
    op: str
    value: float
    text: str  # the expression as written, normalised: "p(95)<1000"
    percentile: float | None = None

    @property
    def id(self) -> str:
        """The test id: `GET /api/items p(95)<800`, `total rate<0.01`."""
        return f"{self.scope} {self.text}"

    @property
    def unit(self) -> str:
        return {"rate": "", "rate_5xx": "", "rps": " req/s", "count": " requests"}.get(self.metric, " ms")

    def measure(self, stats: StatsLike) -> float:
        if self.metric == "avg":
            return stats.avg_ms
        if self.metric == "med":
            return stats.median_ms
        if self.metric == "max":
            return stats.max_ms
        if self.metric == "p":
            return stats.percentile_ms(self.percentile or 0.0)
        if self.metric == "rate":
            return stats.fail_ratio
        if self.metric == "rate_5xx":
            return stats.ratio_5xx
        if self.metric == "rps":
            return stats.rps
        return float(stats.count)

    def holds(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)

    def format_value(self, value: float) -> str:
        if self.metric in ("rate", "rate_5xx"):
            return f"{value:.4g} ({value:.2%})"
        if self.metric == "count":
            return f"{value:.0f}"
        if self.metric == "rps":
            return f"{value:.1f} req/s"
        return f"{value:.0f} ms"


def parse_threshold(scope: str, expression: str) -> Threshold:
    """`parse_threshold("total", "p(95) < 1000")` -> Threshold; ThresholdSyntaxError if unreadable."""
    match = _EXPR.match(expression)
    if not match:
        raise ThresholdSyntaxError(
            f"perf.thresholds.{scope}: cannot read {expression!r} "
            f"(expected METRIC OP VALUE, metric one of {', '.join(METRICS)}, "
            f"op one of {' '.join(OPERATORS)}; "
            f"e.g. 'p(95)<1000' or 'rate<0.01')"
        )
    metric = match["metric"]
    percentile: float | None = None
    if metric.startswith("p("):
        percentile = float(match["pct"])
        if not 0 < percentile <= 100:
            raise ThresholdSyntaxError(
                f"perf.thresholds.{scope}: {expression!r}: percentile must be in (0, 100]"
            )
        metric = "p"
    value = float(match["value"])
    if metric in ("rate", "rate_5xx") and not 0 <= value <= 1:
        raise ThresholdSyntaxError(
            f"perf.thresholds.{scope}: {expression!r}: a rate is a fraction 0..1 (1 % is 0.01)"
        )
    shown = f"p({percentile:g})" if metric == "p" else metric
    return Threshold(scope, metric, match["op"], value, f"{shown}{match['op']}{match['value']}", percentile)


def parse_thresholds(table: Mapping[str, Sequence[str]]) -> list[Threshold]:
    """All thresholds of a profile's `[perf.thresholds]`, in profile order."""
    return [parse_threshold(scope, expr) for scope, exprs in table.items() for expr in exprs]


@dataclass(frozen=True)
class ThresholdVerdict:
    threshold: Threshold
    passed: bool
    measured: float | None
    samples: int
    reason: str

    def __str__(self) -> str:
        return self.reason


def evaluate(threshold: Threshold, stats: StatsLike | None, *, run: str = "") -> ThresholdVerdict:
    """Judge one threshold against the stats of its scope (None: the scope never appeared)."""
    context = f"\n  run: {run}" if run else ""
    if stats is None or stats.count == 0:
        return ThresholdVerdict(
            threshold,
            False,
            None,
            0,
            f"{threshold.id}: no samples — '{threshold.scope}' received no request during the load, "
            f"so the threshold cannot be judged (a threshold over nothing is not a pass){context}\n"
            f"  what to do: {_no_samples_advice(threshold.scope)}",
        )
    measured = threshold.measure(stats)
    passed = threshold.holds(measured)
    shown = threshold.format_value(measured)
    detail = f"over {stats.count} requests"
    if threshold.metric == "rate":
        detail = f"{stats.failures} of {stats.count} requests failed"
    elif threshold.metric == "rate_5xx":
        detail = f"{stats.count_5xx} of {stats.count} responses were 5xx"
    elif threshold.metric == "p":
        detail += " (locust buckets response times to ~2 significant digits)"
    verdict = "holds" if passed else "BROKEN"
    reason = (
        f"{threshold.id}: measured {shown} {detail} — {verdict}\n"
        f"  expected: {threshold.metric if threshold.metric != 'p' else f'p({threshold.percentile:g})'} "
        f"{threshold.op} {threshold.format_value(threshold.value)}{context}"
    )
    if not passed:
        reason += "\n  what to do: " + _advice(threshold)
    return ThresholdVerdict(threshold, passed, measured, stats.count, reason)


def _no_samples_advice(scope: str) -> str:
    if scope == "total":
        return "the load sent no request at all: check the locustfile reaches the target (locust.log)"
    return (
        f"check the locustfile names its requests '{scope}' "
        "(the locust stats table lists the names it used) and that it reaches the target"
    )


def _advice(threshold: Threshold) -> str:
    if threshold.metric in ("rate", "rate_5xx"):
        return (
            "read the failures table in the locust report and the service log; "
            "inventory runbook: errors > 1 % → alert"
        )
    if threshold.metric in ("avg", "med", "max", "p"):
        return (
            "inventory runbook: API p95 > 1000 ms → investigate "
            "(slow queries, pool saturation, CPU) before release"
        )
    if threshold.metric == "count":
        return (
            "the load did not send the expected number of requests: check users/duration and the locustfile"
        )
    return "the target served fewer requests per second than required: check its CPU and pool sizes"


def abort_reason(
    thresholds: Sequence[Threshold],
    endpoints: Mapping[str, StatsLike],
    total: StatsLike,
    *,
    min_samples: int,
) -> str | None:
    """Why a running load should stop now (a clear breach), or None.

    Only metrics a running load cannot recover from are judged, and only once the scope has
    `min_samples` requests, so a cold start or one early error does not end a run.
    """
    for threshold in thresholds:
        if threshold.metric not in ABORTABLE:
            continue
        stats = total if threshold.scope == "total" else endpoints.get(threshold.scope)
        if stats is None or stats.count < min_samples:
            continue
        measured = threshold.measure(stats)
        if not threshold.holds(measured):
            shown = threshold.format_value(measured)
            return f"{threshold.id} broken while running: {shown} after {stats.count} requests"
    return None
