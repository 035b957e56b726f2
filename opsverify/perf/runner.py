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
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsverify import cleanup
from opsverify.config import REPO_ROOT
from opsverify.errors import OpsError
from opsverify.perf.stats import EndpointStats, FailureLine, HistoryPoint, endpoint_stats_from_locust, merge_stats
from opsverify.redact import redact

HOOKS_FILE = REPO_ROOT / "locustfiles" / "_opsverify_hooks.py"
STARTUP_GRACE_S = 30.0


class LoadError(OpsError):
    """Locust could not run, or left no results to judge."""


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


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    return str(path)
