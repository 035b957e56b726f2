"""Lock waits while a migration runs under load (the online upgrade)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from opsverify.migration.errors import MigrationError, StepFailed
from opsverify.migration.runtime import _url_for_libpq
from opsverify.migration.tree import MigrationTree

# Lock waits while a migration runs


@dataclass(frozen=True)
class LockWait:
    pid: int
    waited_ms: float
    mode: str
    relation: str
    query: str
    blocked_by: tuple[int, ...]
    blocker_queries: tuple[str, ...]

    def describe(self) -> str:
        blockers = "; ".join(f"{p}: {q}" for p, q in zip(self.blocked_by, self.blocker_queries, strict=False))
        return (
            f"pid {self.pid} waited {self.waited_ms:.0f} ms for {self.mode} on {self.relation or '?'}: "
            f"{' '.join(self.query.split())[:200]} (blocked by {blockers or '?'})"
        )


_LOCK_SAMPLE = """
SELECT l.pid,
       extract(epoch FROM (now() - coalesce(l.waitstart, a.state_change))) * 1000,
       l.mode, coalesce(l.relation::regclass::text, l.locktype), coalesce(a.query, ''),
       pg_blocking_pids(l.pid),
       ARRAY(SELECT coalesce(b.query, '') FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(l.pid)))
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database() AND l.pid <> pg_backend_pid()
"""


class LockSampler:
    """Samples pg_locks / pg_stat_activity every `interval_s` and keeps each waiter's longest wait."""

    def __init__(self, url: str, interval_s: float = 0.05, max_duration_s: float = 600.0) -> None:
        self.url = _url_for_libpq(url)
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.samples = 0
        self.errors: list[str] = []
        self._waits: dict[tuple[int, str], LockWait] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lock-sampler", daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, application_name="opsverify-lock-sampler"
            ) as conn:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    for pid, waited, mode, relation, query, blockers, blocker_queries in conn.execute(
                        _LOCK_SAMPLE
                    ):
                        key = (int(pid), str(query))
                        wait = LockWait(
                            int(pid),
                            float(waited or 0),
                            str(mode),
                            str(relation),
                            str(query),
                            tuple(blockers or ()),
                            tuple(blocker_queries or ()),
                        )
                        if key not in self._waits or wait.waited_ms > self._waits[key].waited_ms:
                            self._waits[key] = wait
                    self.samples += 1
                    self._stop.wait(self.interval_s)
        except psycopg.Error as exc:
            self.errors.append(str(exc).strip().splitlines()[0])

    @property
    def waits(self) -> list[LockWait]:
        return sorted(self._waits.values(), key=lambda w: -w.waited_ms)

@dataclass(frozen=True)
class OnlineUpgrade:
    """An upgrade run while something else (a load) used the database, with what it made others wait."""

    seconds: float
    error: StepFailed | None
    waits: list[LockWait]
    samples: int
    sampler_errors: list[str]
    load: Any = None
    load_error: BaseException | None = None

    @property
    def longest_wait_ms(self) -> float:
        return max((w.waited_ms for w in self.waits), default=0.0)


def online_upgrade(
    tree: MigrationTree,
    url: str,
    destination: str,
    load: Callable[[], Any],
    *,
    warmup_s: float = 3.0,
    interval_s: float = 0.05,
    timeout_s: float = 300.0,
) -> OnlineUpgrade:
    """Start `load()` in a thread, let it warm up, upgrade while sampling lock waits, wait for the load.

    `load` must be bounded (a locust run with a duration); `timeout_s` bounds the wait for it.
    """
    box: dict[str, Any] = {}

    def run_load() -> None:
        try:
            box["result"] = load()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run_load, name="migration-load", daemon=True)
    thread.start()
    thread.join(timeout=warmup_s)
    error: StepFailed | None = None
    started = time.monotonic()
    with LockSampler(url, interval_s=interval_s, max_duration_s=timeout_s) as sampler:
        try:
            tree.upgrade(url, destination)
        except StepFailed as exc:
            error = exc
        # One more interval so a wait that ends with the upgrade is sampled at its longest.
        time.sleep(interval_s)
    seconds = time.monotonic() - started
    thread.join(timeout=timeout_s)
    if thread.is_alive():
        box.setdefault("error", MigrationError(f"the load did not finish within {timeout_s:.0f} s"))
    return OnlineUpgrade(
        seconds, error, sampler.waits, sampler.samples, sampler.errors, box.get("result"), box.get("error")
    )
