"""Load runs with locust as a subprocess, read back from its own JSON and CSV files.

Locust is never imported here: it monkey-patches the process with gevent on import, which
would break pytest, psycopg and httpx in the suite. `run_locust` starts
`python -m locust --headless` in its own process group, bounded by the run time plus a hard
kill, and builds a `LoadResult` from what locust wrote:

* `<out>/locust.json` (`--json-file`): per request name the response-time histogram, counts,
  failures, min/max/total time — percentiles are computed from that histogram with locust's
  own algorithm, so they match locust's report. Locust buckets response times to ~2
  significant digits (147 ms is stored as 150, 3432 ms as 3400): a p95 is exact to about ±5 %.
* `<out>/locust_stats_history.csv` (`--csv --csv-full-history`): the time series (users,
  req/s, failures/s, current p50/p95/p99 per second) for the report chart.
* `<out>/opsverify.json`: written by `locustfiles/_opsverify_hooks.py`, loaded next to the
  locustfile: 5xx counts per request name and, if the run was stopped early by
  `abort_on_fail`, why.

The query benchmarks of the ingest runbook (`[[perf.queries]]`) live at the end of the file.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsverify import cleanup
from opsverify.config import REPO_ROOT
from opsverify.errors import OpsError
from opsverify.redact import redact

HOOKS_FILE = REPO_ROOT / "locustfiles" / "_opsverify_hooks.py"
STARTUP_GRACE_S = 30.0
# Percentiles shown in the stats table (locust's CSV columns use the same set).
TABLE_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


class LoadError(OpsError):
    """Locust could not run, or left no results to judge."""


# ---------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class LoadSpec:
    """What to run. Everything is bounded: users, spawn rate, duration; host must be given."""

    locustfile: Path
    host: str
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 15.0
    # 0: one process; N: locust's own --processes N (a master and N forked workers).
    processes: int = 0
    # Seconds locust lets a user finish its current task at the end (--stop-timeout); killing
    # in-flight slow requests would bias the percentiles low.
    stop_timeout_s: float = 3.0
    # Threshold (scope, text) pairs evaluated inside locust to stop early on a clear breach.
    abort_thresholds: tuple[tuple[str, str], ...] = ()
    abort_delay_s: float = 5.0
    abort_min_samples: int = 20
    # User classes to run (default: all in the locustfile).
    user_classes: tuple[str, ...] = ()
    # Extra environment for the locustfile (e.g. knobs it reads with os.environ).
    env: dict[str, str] = field(default_factory=dict)
    # Hard limit on top of duration + stop timeout, for start-up and writing results.
    grace_s: float = STARTUP_GRACE_S

    def validate(self) -> None:
        if not self.locustfile.is_file():
            raise LoadError(
                f"locustfile {self.locustfile} not found (perf.locustfile is relative to the repository)"
            )
        if not self.host.startswith(("http://", "https://")):
            raise LoadError(f"load host {self.host!r} is not an http(s) URL")
        if self.users < 1 or self.spawn_rate <= 0 or self.duration_s <= 0 or self.processes < 0:
            raise LoadError(
                f"load must be bounded and positive: users={self.users} spawn_rate={self.spawn_rate} "
                f"duration_s={self.duration_s} processes={self.processes}"
            )

    @property
    def hard_limit_s(self) -> float:
        return self.duration_s + self.stop_timeout_s + self.grace_s + 5.0 * self.processes

    def describe(self) -> str:
        procs = f", {self.processes} worker processes" if self.processes else ""
        return (
            f"{self.users} users (spawn {self.spawn_rate:g}/s) for {self.duration_s:g} s{procs}, "
            f"locustfile {_display(self.locustfile)}"
        )


@dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    endpoints: dict[str, EndpointStats]
    total: EndpointStats
    history: list[HistoryPoint]
    failures: list[FailureLine]
    out_dir: Path
    wall_s: float
    returncode: int | None
    # Why the run was stopped early by abort_on_fail; None when it ran its full duration.
    aborted: str | None = None
    # True when locust overran its hard limit and was killed (results may be partial).
    killed: bool = False
    workers: int = 0
    log_tail: str = ""

    def endpoint(self, name: str) -> EndpointStats | None:
        """Stats of a request name; 'total' for all requests."""
        if name == "total":
            return self.total
        return self.endpoints.get(name)

    def top_failures(self, name: str | None = None, limit: int = 3) -> list[FailureLine]:
        rows = [f for f in self.failures if name in (None, "total", f.name)]
        return sorted(rows, key=lambda f: -f.occurrences)[:limit]

    def describe(self) -> str:
        how = f"aborted early: {self.aborted}" if self.aborted else f"{self.wall_s:.1f} s wall"
        return (
            f"{self.spec.describe()}; {self.total.count} requests, {how}; raw output {_display(self.out_dir)}"
        )


# ---------------------------------------------------------------------------------------------
# Running locust


def locust_command(spec: LoadSpec, out_dir: Path) -> list[str]:
    run_time = max(1, math.ceil(spec.duration_s))
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        f"{spec.locustfile},{HOOKS_FILE}",
        "--headless",
        "--host",
        spec.host,
        "--users",
        str(spec.users),
        "--spawn-rate",
        f"{spec.spawn_rate:g}",
        "--run-time",
        f"{run_time}s",
        "--stop-timeout",
        f"{spec.stop_timeout_s:g}",
        "--csv",
        str(out_dir / "locust"),
        "--csv-full-history",
        "--json-file",
        str(out_dir / "locust"),
        "--html",
        str(out_dir / "locust_report.html"),
        "--only-summary",
        # Failures are judged by the thresholds, not by locust's exit code.
        "--exit-code-on-error",
        "0",
        "--logfile",
        str(out_dir / "locust.log"),
    ]
    if spec.processes:
        cmd += ["--processes", str(spec.processes)]
    cmd += list(spec.user_classes)
    return cmd


class LocustRun:
    """A locust load running in the background (from `start_locust`); `wait()` or `stop()` it.

    For checks that need traffic *while* something else happens (an online migration, a
    restart): start the load, do the thing, then `wait()` for the bounded run to end or
    `stop()` it early — locust still writes its results on SIGTERM. As a context manager it
    never outlives its block.
    """

    def __init__(self, spec: LoadSpec, out_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.process = process
        self.started = time.monotonic()
        self._token = cleanup.register(f"locust pid {process.pid}", lambda: cleanup.stop_process(process))
        self._result: LoadResult | None = None

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self) -> LoadResult:
        """Until locust ends (its run time) or its hard limit passes (then it is killed)."""
        if self._result is not None:
            return self._result
        killed = False
        remaining = max(0.0, self.spec.hard_limit_s - (time.monotonic() - self.started))
        try:
            self.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            killed = True
            # SIGTERM first: locust's handler still writes its JSON/CSV before exiting.
            cleanup.stop_process(self.process, grace_s=10.0)
        return self._finish(killed)

    def stop(self) -> LoadResult:
        """End the load now (SIGTERM to its process group); the results so far are kept."""
        if self._result is None and self.running:
            cleanup.stop_process(self.process, grace_s=10.0)
        return self.wait()

    def _finish(self, killed: bool) -> LoadResult:
        try:
            cleanup.stop_process(self.process)
        finally:
            cleanup.done(self._token)
        wall = time.monotonic() - self.started
        self._result = read_results(
            self.spec, self.out_dir, wall_s=wall, returncode=self.process.returncode, killed=killed
        )
        return self._result

    def __enter__(self) -> LocustRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._result is None:
            cleanup.stop_process(self.process, grace_s=10.0)
            cleanup.done(self._token)


def start_locust(spec: LoadSpec, out_dir: Path) -> LocustRun:
    """Start one bounded headless locust load against `spec.host`; returns at once."""
    spec.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("locust.json", "opsverify.json", "locust_stats_history.csv", "locust_failures.csv"):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / stale).unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["OPS_LOCUST_SIDE_FILE"] = str(out_dir / "opsverify.json")
    env.pop("OPS_LOCUST_ABORT", None)
    if spec.abort_thresholds:
        env["OPS_LOCUST_ABORT"] = json.dumps(
            {
                "thresholds": spec.abort_thresholds,
                "delay_s": spec.abort_delay_s,
                "min_samples": spec.abort_min_samples,
            }
        )
    env.update(spec.env)
    cmd = locust_command(spec, out_dir)
    (out_dir / "command.txt").write_text(redact(" ".join(cmd)) + "\n", encoding="utf-8")
    with (out_dir / "locust.console.log").open("wb") as console:
        process = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the hard kill takes the workers too
        )
    return LocustRun(spec, out_dir, process)


def run_locust(spec: LoadSpec, out_dir: Path) -> LoadResult:
    """Run one bounded headless locust load against `spec.host` and read its results.

    Raises LoadError when locust cannot start (bad locustfile, import error) or writes no
    results. A run that merely *fails requests* is a result, not an error.
    """
    with start_locust(spec, out_dir) as run:
        return run.wait()


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return redact("\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]))
    return ""


def read_results(
    spec: LoadSpec, out_dir: Path, *, wall_s: float = 0.0, returncode: int | None = None, killed: bool = False
) -> LoadResult:
    """Build a LoadResult from the files a locust run left in `out_dir`."""
    log_tail = _tail(out_dir / "locust.console.log") or _tail(out_dir / "locust.log")
    json_path = out_dir / "locust.json"
    if not json_path.is_file():
        what = (
            f"was killed after its hard limit of {spec.hard_limit_s:.0f} s"
            if killed
            else f"exited {returncode}"
        )
        raise LoadError(
            f"locust {what} without writing {_display(json_path)}; "
            f"run: {spec.describe()}\nlast lines of its output:\n{log_tail}"
        )
    raw = json.loads(json_path.read_text(encoding="utf-8"))
    side: dict[str, Any] = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        side = json.loads((out_dir / "opsverify.json").read_text(encoding="utf-8"))
    status_5xx: dict[str, int] = side.get("status_5xx", {})
    firsts = [e["start_time"] for e in raw if e.get("start_time") and e.get("num_requests")]
    lasts = [e["last_request_timestamp"] for e in raw if e.get("last_request_timestamp")]
    window = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    endpoints: dict[str, EndpointStats] = {}
    for entry in raw:
        name = request_key(entry.get("method"), entry["name"])
        endpoints[name] = endpoint_stats_from_locust(name, entry, status_5xx, window_s=window)
    total = merge_stats("total", list(endpoints.values()), window)
    return LoadResult(
        spec=spec,
        endpoints=dict(sorted(endpoints.items())),
        total=total,
        history=read_history(out_dir / "locust_stats_history.csv"),
        failures=read_failures(out_dir / "locust_failures.csv"),
        out_dir=out_dir,
        wall_s=wall_s,
        returncode=returncode,
        aborted=side.get("aborted"),
        killed=killed,
        workers=int(side.get("workers") or 0),
        log_tail=log_tail,
    )


def request_key(method: str | None, name: str) -> str:
    """`GET /api/items` whether the locustfile named it `/api/items` or `GET /api/items`."""
    method = (method or "").upper()
    return name if not method or name.upper().startswith(f"{method} ") else f"{method} {name}"


def _number(value: str | None) -> float | None:
    if value in (None, "", "N/A"):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def read_history(path: Path) -> list[HistoryPoint]:
    points: list[HistoryPoint] = []
    if not path.is_file():
        return points
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("Name") != "Aggregated":
                continue
            points.append(
                HistoryPoint(
                    t_s=float(row["Timestamp"]),
                    users=int(float(row.get("User Count") or 0)),
                    rps=_number(row.get("Requests/s")) or 0.0,
                    fail_per_s=_number(row.get("Failures/s")) or 0.0,
                    p50_ms=_number(row.get("50%")),
                    p95_ms=_number(row.get("95%")),
                    p99_ms=_number(row.get("99%")),
                )
            )
    return points


def read_failures(path: Path) -> list[FailureLine]:
    rows: list[FailureLine] = []
    if not path.is_file():
        return rows
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append(
                FailureLine(
                    name=request_key(row.get("Method"), row.get("Name", "")),
                    error=redact(row.get("Error", ""))[:300],
                    occurrences=int(row.get("Occurrences") or 0),
                )
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Report fragments (self-contained HTML: no script, no external resource)


def stats_table_html(result: LoadResult) -> str:
    heads = [
        "request",
        "count",
        "failures",
        "5xx",
        "avg ms",
        "med ms",
        *[f"p{p:g} ms" for p in TABLE_PERCENTILES],
        "max ms",
        "req/s",
    ]
    rows = []
    for stats in [*result.endpoints.values(), result.total]:
        cells = [
            stats.name,
            str(stats.count),
            f"{stats.failures} ({stats.fail_ratio:.2%})",
            str(stats.count_5xx),
            f"{stats.avg_ms:.0f}",
            f"{stats.median_ms:.0f}",
            *[f"{stats.percentile_ms(p):.0f}" for p in TABLE_PERCENTILES],
            f"{stats.max_ms:.0f}",
            f"{stats.rps:.1f}",
        ]
        weight = " style='font-weight:bold'" if stats.name == "total" else ""
        rows.append(f"<tr{weight}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    return (
        "<table class='ops-perf' style='border-collapse:collapse' border='1' cellpadding='3'>"
        f"<tr>{head}</tr>{''.join(rows)}</table>"
    )


def history_svg(history: Sequence[HistoryPoint], width: int = 640, height: int = 220) -> str:
    """p50/p95 (left axis, ms) and req/s (right axis) over time, as an inline SVG."""
    if len(history) < 2:
        return "<p>(too few stats-history points for a chart)</p>"
    t0 = history[0].t_s
    xs = [p.t_s - t0 for p in history]
    span = max(xs[-1], 1.0)
    lat_max = max([p.p95_ms or 0.0 for p in history] + [p.p50_ms or 0.0 for p in history] + [1.0])
    rps_max = max([p.rps for p in history] + [1.0])
    left, right, top, bottom = 50, width - 50, 15, height - 30

    def x(t: float) -> float:
        return left + (right - left) * t / span

    def y(v: float, vmax: float) -> float:
        return bottom - (bottom - top) * v / vmax

    def line(values: list[float | None], vmax: float, colour: str, dash: str = "") -> str:
        pts = " ".join(
            f"{x(t):.1f},{y(v, vmax):.1f}" for t, v in zip(xs, values, strict=True) if v is not None
        )
        extra = f" stroke-dasharray='{dash}'" if dash else ""
        return f"<polyline fill='none' stroke='{colour}' stroke-width='2'{extra} points='{pts}'/>"

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        "aria-label='locust p50/p95 latency and requests per second over time' style='font:11px sans-serif'>",
        f"<rect x='{left}' y='{top}' width='{right - left}' height='{bottom - top}' "
        "fill='none' stroke='#ccc'/>",
        line([p.p50_ms for p in history], lat_max, "#1f77b4"),
        line([p.p95_ms for p in history], lat_max, "#d62728"),
        line([p.rps for p in history], rps_max, "#2ca02c", "4 3"),
        f"<text x='{left - 4}' y='{top + 8}' text-anchor='end'>{lat_max:.0f}</text>",
        f"<text x='{left - 4}' y='{bottom}' text-anchor='end'>0 ms</text>",
        f"<text x='{right + 4}' y='{top + 8}'>{rps_max:.0f}</text>",
        f"<text x='{right + 4}' y='{bottom}'>0 req/s</text>",
        f"<text x='{left}' y='{height - 8}'>0 s</text>",
        f"<text x='{right}' y='{height - 8}' text-anchor='end'>{span:.0f} s</text>",
        f"<text x='{left + 60}' y='{height - 8}' fill='#1f77b4'>p50</text>",
        f"<text x='{left + 90}' y='{height - 8}' fill='#d62728'>p95</text>",
        f"<text x='{left + 120}' y='{height - 8}' fill='#2ca02c'>req/s (right axis, dashed)</text>",
        "</svg>",
    ]
    return "".join(parts)


def summary_fragment(result: LoadResult, title: str = "Performance (locust)") -> str:
    note = (
        "Percentiles from locust's histogram (response times bucketed to ~2 significant digits); "
        "chart: 10 s sliding window from locust's stats history."
    )
    aborted = f"<p><b>Stopped early:</b> {html.escape(result.aborted)}</p>" if result.aborted else ""
    return (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(result.describe())}</p>{aborted}"
        f"{history_svg(result.history)}{stats_table_html(result)}<p><small>{html.escape(note)}</small></p>"
    )


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    return str(path)


# ---------------------------------------------------------------------------------------------
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
