"""Loaded by opsverify next to every locustfile (`locust -f yours.py,_opsverify_hooks.py`).

Runs only inside the locust process, never in pytest. It adds what locust's own JSON/CSV do
not carry, through locust's documented event hooks:

* 5xx counts per request name. Locust counts any failure (4xx, 5xx, connection errors,
  `response.failure()`); the `rate_5xx` threshold needs server errors on their own. Workers
  send their counts to the master with `report_to_master`, so this also works distributed
  (`--processes N` or workers on other machines).
* abort on a clear breach (profile `perf.abort_on_fail`): after the warm-up delay the master
  (or the only process) checks the running stats every second with opsverify's own threshold
  evaluator and quits the run when a latency or failure-ratio threshold is already broken.

Everything it learned is written to $OPS_LOCUST_SIDE_FILE when locust quits. Without that
variable (a locustfile run by hand) it does nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

SIDE_FILE = os.environ.get("OPS_LOCUST_SIDE_FILE")
ABORT_SPEC = os.environ.get("OPS_LOCUST_ABORT")
CHECK_INTERVAL_S = 1.0

_5xx: Counter[str] = Counter()
_state: dict[str, Any] = {"environment": None, "aborted": None}
_workers: set[str] = set()


def _key(method: str | None, name: str) -> str:
    method = (method or "").upper()
    return name if not method or name.upper().startswith(f"{method} ") else f"{method} {name}"


@events.request.add_listener
def _on_request(request_type: str, name: str, response: Any = None, **_: Any) -> None:
    status = getattr(response, "status_code", None) or 0
    if 500 <= int(status) <= 599:
        _5xx[_key(request_type, name)] += 1


@events.report_to_master.add_listener
def _send_5xx(client_id: str, data: dict[str, Any]) -> None:
    data["opsverify_5xx"] = dict(_5xx)
    _5xx.clear()


@events.worker_report.add_listener
def _merge_5xx(client_id: str, data: dict[str, Any]) -> None:
    _workers.add(client_id)
    _5xx.update(data.get("opsverify_5xx", {}))


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _state["environment"] = environment
    if ABORT_SPEC and SIDE_FILE and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_abort_watch, environment, json.loads(ABORT_SPEC))


def _abort_watch(environment: Environment, spec: dict[str, Any]) -> None:
    """Quit early when a threshold is clearly broken (k6's abortOnFail with delayAbortEval)."""
    # Imported here: only the master/local process needs it, and workers on other machines
    # need not have opsverify installed.
    from opsverify.perf import endpoint_stats_from_locust
    from opsverify.perf.thresholds import abort_reason, parse_threshold

    thresholds = [parse_threshold(scope, text) for scope, text in spec["thresholds"]]
    started = time.monotonic()
    while True:
        gevent.sleep(CHECK_INTERVAL_S)
        runner = environment.runner
        if runner is None or runner.state in ("stopping", "stopped"):
            if runner is not None and runner.state == "stopped":
                return
            continue
        if time.monotonic() - started < float(spec["delay_s"]):
            continue
        stats = environment.stats
        entries = {
            _key(e.method, e.name): endpoint_stats_from_locust(_key(e.method, e.name), e.serialize(), _5xx)
            for e in stats.entries.values()
        }
        total = endpoint_stats_from_locust("total", stats.total.serialize(), _5xx)
        reason = abort_reason(thresholds, entries, total, min_samples=int(spec["min_samples"]))
        if reason:
            _state["aborted"] = reason
            environment.process_exit_code = 0
            runner.quit()
            return


@events.quit.add_listener
def _write_side_file(exit_code: int, **_: Any) -> None:
    if not SIDE_FILE:
        return
    environment: Environment | None = _state["environment"]
    if environment is not None and isinstance(environment.runner, WorkerRunner):
        return
    runner = environment.runner if environment is not None else None
    payload = {
        "status_5xx": dict(_5xx),
        "aborted": _state["aborted"],
        "distributed": isinstance(runner, MasterRunner),
        "workers": len(_workers),
        "exit_code": exit_code,
    }
    tmp = f"{SIDE_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)
    os.replace(tmp, SIDE_FILE)
