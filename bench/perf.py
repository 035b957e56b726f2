"""How far can the performance gate's numbers be trusted? locust vs wrk on the same target.

    .venv/bin/python bench/perf.py [--rate 50] [--seconds 20] [--max-seconds 15]

Starts the reference service (its own Postgres/Redis, like the self-tests; rate limit raised so
one load generator is not throttled), then:

1. same target, same rate: locust (10 users) and wrk (10 connections) both wait a uniform
   0.5..1.5 x (10/RATE) s after each response (locust `between`, wrk's Lua `delay()`), so both
   send ~RATE req/s to GET /api/items?limit=20 with the same arrival pattern;
   compares their p95 (goal: locust within ±10 % of wrk), once as is and once with a 200 ms
   latency fault (SAMPLE_FAULTS=latency_ms=200). wrk's percentiles are exact (HdrHistogram,
   µs); locust's are bucketed to ~2 significant digits.
2. max throughput per core: each generator flat out against GET /healthz (50 users / 50
   connections, one process / one thread); requests ÷ CPU seconds the generator itself used
   (getrusage of the child) = requests per core-second.

Needs the Debian package `wrk` (apt-get install -y wrk); exits with that hint if it is missing.
Prints the table and the ratios; paste them into README's performance section.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsverify.perf import LoadSpec, run_locust
from opsverify.reference import migrate_and_seed, running_reference_service
from opsverify.services import LocalProvider, choose_provider

ITEMS = "/api/items?limit=20"
USERS = 10

LOCUSTFILE = """
import os, uuid
from locust import FastHttpUser, between, constant, task

PACE_S = float(os.environ["BENCH_PACE_S"])  # mean think time per user; 0 = flat out
PATH = os.environ["BENCH_PATH"]

# The same user class the gate's locustfiles use (geventhttpclient).
class BenchUser(FastHttpUser):
    # The wrk script's arrival model: a uniform 0.5..1.5 x pace wait after each response.
    wait_time = between(0.5 * PACE_S, 1.5 * PACE_S) if PACE_S > 0 else constant(0)

    def __init__(self, *args, **kwargs):
        self.default_headers = {"X-Client-Id": f"bench-{uuid.uuid4().hex[:8]}"}
        super().__init__(*args, **kwargs)

    @task
    def hit(self):
        self.client.get(PATH, name="GET " + PATH)
"""

WRK_SCRIPT = """
local pace_ms = tonumber(os.getenv("BENCH_PACE_MS") or "0")
-- Uniform 0.5..1.5 x pace before each request: connections drift apart instead of firing in
-- lock-step bursts (the locust user waits the same way).
function delay()
  if pace_ms <= 0 then return 0 end
  return math.floor(pace_ms * (0.5 + math.random()))
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p95_us=%d p99_us=%d errors=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    base_url: str, path: str, connections: int, seconds: int, pace_ms: float, script: Path
) -> dict[str, float]:
    env = {"BENCH_PACE_MS": f"{pace_ms:.0f}", "PATH": "/usr/bin:/bin"}
    before = children_cpu_s()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url + path,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        env=env,
        check=True,
    ).stdout
    cpu = children_cpu_s() - before
    match = re.search(r"BENCH (.*)", out)
    if not match:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    values = {k: float(v) for k, v in (pair.split("=") for pair in match[1].split())}
    return {
        "requests": values["requests"],
        "rps": values["requests"] / (values["duration_us"] / 1e6),
        "p50_ms": values["p50_us"] / 1000,
        "p95_ms": values["p95_us"] / 1000,
        "p99_ms": values["p99_us"] / 1000,
        "errors": values["errors"],
        "cpu_s": cpu,
    }


def run_locust_bench(
    base_url: str, path: str, users: int, seconds: int, pace_s: float, workdir: Path
) -> dict[str, float]:
    locustfile = workdir / "bench_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    spec = LoadSpec(
        locustfile=locustfile,
        host=base_url,
        users=users,
        spawn_rate=users,
        duration_s=seconds,
        stop_timeout_s=1,
        env={"BENCH_PACE_S": str(pace_s), "BENCH_PATH": path},
    )
    before = children_cpu_s()
    result = run_locust(spec, workdir / f"locust-{path.strip('/').replace('/', '_')[:20]}-{pace_s:g}")
    cpu = children_cpu_s() - before
    total = result.total
    return {
        "requests": float(total.count),
        "rps": total.rps,
        "p50_ms": total.percentile_ms(50),
        "p95_ms": total.percentile_ms(95),
        "p99_ms": total.percentile_ms(99),
        "errors": float(total.failures),
        "cpu_s": cpu,
    }


def row(name: str, r: dict[str, float]) -> str:
    per_core = r["requests"] / r["cpu_s"] if r["cpu_s"] else float("nan")
    return (
        f"{name:<22} {r['requests']:>8.0f} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
        f"{r['p99_ms']:>8.2f} {r['errors']:>6.0f} {r['cpu_s']:>7.2f} {per_core:>10.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="total req/s for the same-rate comparison")
    parser.add_argument("--seconds", type=int, default=20, help="duration of each same-rate run")
    parser.add_argument("--max-seconds", type=int, default=15, help="duration of each flat-out run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/perf.py needs wrk: apt-get install -y wrk (Debian package)", file=sys.stderr)
        return 2
    provider = choose_provider("auto")
    if provider.name == "containers":
        with contextlib.suppress(Exception):
            provider = LocalProvider()
    pg, rd = provider.start()
    try:
        template = pg.template("bench-sample", migrate_and_seed)
        with (
            tempfile.TemporaryDirectory(prefix="opsverify-bench-") as tmp,
            pg.throwaway_database(template=template) as url,
        ):
            workdir = Path(tmp)
            script = workdir / "pace.lua"
            script.write_text(WRK_SCRIPT)
            pace_ms = USERS / args.rate * 1000
            results: dict[str, dict[str, float]] = {}
            # Fast endpoint as is, then with 200 ms injected: the generator's own overhead is a
            # few ms, large next to 5 ms answers, small next to the latencies thresholds guard.
            for label, faults in (("", ""), (" +200ms", "latency_ms=200")):
                with running_reference_service(
                    database_url=url,
                    redis_url=rd.url(),
                    log_path=workdir / "service.log",
                    faults=faults,
                    env={"RATE_LIMIT_PER_SEC": "1000000"},
                ) as svc:
                    base = svc.base_url
                    # Warm up the service (pool, caches) so neither generator pays for it.
                    run_wrk(base, ITEMS, 4, 3, 0, script)
                    results[f"locust same rate{label}"] = run_locust_bench(
                        base, ITEMS, USERS, args.seconds, pace_ms / 1000, workdir
                    )
                    results[f"wrk same rate{label}"] = run_wrk(
                        base, ITEMS, USERS, args.seconds, pace_ms, script
                    )
                    if not faults:
                        results["locust flat out"] = run_locust_bench(
                            base, "/healthz", 50, args.max_seconds, 0, workdir
                        )
                        results["wrk flat out"] = run_wrk(base, "/healthz", 50, args.max_seconds, 0, script)
    finally:
        provider.stop()
    print(
        f"\nreference service, GET {ITEMS} paced for ~{args.rate:g} req/s ({args.seconds} s; "
        "as is and with a latency_ms=200 fault) and GET /healthz flat out "
        f"({args.max_seconds} s); {time.strftime('%Y-%m-%d')}, {provider.name} servers"
    )
    print(
        f"{'run':<22} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'cpu s':>7} {'req/core-s':>10}"
    )
    for name, result in results.items():
        print(row(name, result))
    print()
    for label in ("", " +200ms"):
        same_l, same_w = results[f"locust same rate{label}"], results[f"wrk same rate{label}"]
        p95_ratio = same_l["p95_ms"] / same_w["p95_ms"]
        within = "within" if abs(p95_ratio - 1) <= 0.10 else "OUTSIDE"
        print(
            f"p95 locust/wrk at the same rate{label or ' (as is)'}: {p95_ratio:.2f} "
            f"({within} the ±10 % goal); "
            f"p50 {same_l['p50_ms'] / same_w['p50_ms']:.2f}; "
            f"p95 difference {same_l['p95_ms'] - same_w['p95_ms']:+.1f} ms"
        )
    max_l, max_w = results["locust flat out"], results["wrk flat out"]
    per_core_ratio = (max_l["requests"] / max_l["cpu_s"]) / (max_w["requests"] / max_w["cpu_s"])
    locust_core = max_l["requests"] / max_l["cpu_s"]
    wrk_core = max_w["requests"] / max_w["cpu_s"]
    print(
        f"max req/s per core locust/wrk:  {per_core_ratio:.3f} "
        f"(locust {locust_core:.0f}, wrk {wrk_core:.0f} per core-second)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
