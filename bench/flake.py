"""False failures of smoke + integration against a healthy reference service (goal: 0).

    .venv/bin/python bench/flake.py [--runs 20] [--markers "smoke or integration"]

Starts one pair of local throwaway servers, runs the gates N times against the reference service
(each run starts its own), and prints every test that failed although nothing was broken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opsverify.services import choose_provider
from tests.gaterun import run_gates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--markers", default="smoke or integration")
    parser.add_argument("--services", default="auto", help="provider for the shared servers")
    args = parser.parse_args()

    provider = choose_provider(args.services)
    pg, rd = provider.start()
    env = {"OPS_DATABASE_URL": pg.url(), "OPS_REDIS_URL": rd.url(), "OPS_SERVICES": "external"}
    false_failures: Counter[str] = Counter()
    tests_run = 0
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="opsverify-flake-") as tmp:
            for i in range(args.runs):
                run = run_gates("-m", args.markers, report_dir=Path(tmp) / f"r{i}", env=env, timeout_s=900)
                tests_run += len(run.outcomes)
                false_failures.update(run.failed)
                print(
                    f"run {i + 1}/{args.runs}: rc={run.returncode} tests={len(run.outcomes)} failed={len(run.failed)}"
                )
    finally:
        provider.stop()
    elapsed = time.monotonic() - started
    total = sum(false_failures.values())
    print(f"\nflake: {total} false failures in {tests_run} test executions over {args.runs} runs ({elapsed:.0f} s)")
    for test, count in false_failures.most_common():
        print(f"  {count:3d}  {test}")
    return 1 if total else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("flake: interrupted; servers and runs stopped")
        raise SystemExit(2) from None
