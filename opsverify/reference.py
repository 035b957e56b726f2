"""Running the bundled reference service (reference_service) as a real process.

The suite starts it on a free loopback port against a throwaway database, waits until it
answers, and stops it (and its whole process group) however the run ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from opsverify import cleanup
from opsverify.config import REPO_ROOT
from opsverify.errors import OpsError
from opsverify.services import free_port


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise OpsError(f"the reference service package {name!r} is not installed (run `make venv`)")
    return Path(spec.origin).parent


REFERENCE_ALEMBIC_INI = _package_dir("reference_service") / "alembic.ini"
START_TIMEOUT_S = 30.0
SEED_ROWS = 200


class ServiceStartError(OpsError):
    pass


def _python_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout_s: float = 120.0) -> None:
    """`python -m reference_service ARGS`; raises with its one-line error on failure."""
    result = subprocess.run(
        [sys.executable, "-m", "reference_service", *args],
        env=_python_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceStartError(f"reference service `{' '.join(args)}` failed: {tail[0]}")


def migrate_and_seed(database_url: str, rows: int = SEED_ROWS, revision: str = "head") -> None:
    run_cli(["migrate", "--revision", revision], {"DATABASE_URL": database_url})
    if rows:
        run_cli(["seed", "--rows", str(rows)], {"DATABASE_URL": database_url})


def grow_source(url: str, rows: int) -> None:
    """A DR source grown to `rows` by the reference service's own seed (deterministic SKUs, so a
    template's 200 rows are topped up), plus a JSONB-carrying child table."""
    if rows > 0:
        run_cli(["seed", "--rows", str(rows)], {"DATABASE_URL": url}, timeout_s=1800)
    # A second, JSONB-carrying table with a foreign key, so the manifest proves more than one shape.
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, contextlib.suppress(psycopg.Error):
        conn.execute(
            "INSERT INTO outbox (item_id, event, payload, status) "
            "SELECT id, 'item.created', jsonb_build_object('id', id, 'sku', sku), 'sent' FROM items WHERE id % 10 = 0"
        )
        conn.execute("ANALYZE")


@dataclass
class ReferenceService:
    """A running reference service process."""

    base_url: str
    port: int
    database_url: str
    redis_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        cleanup.stop_process(self.process)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def access_log(self) -> list[dict[str, object]]:
        """The service's JSON request lines (the proof of what reached it)."""
        import json

        entries = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("msg") == "request":
                    entries.append(entry)
        return entries


def start_reference_service(
    *,
    database_url: str,
    redis_url: str,
    log_path: Path,
    redis_prefix: str = "sample:",
    faults: str = "",
    env: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> ReferenceService:
    import httpx  # here, not at the top: runs that start no service skip the import

    port = free_port()
    child_env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "SAMPLE_FAULTS": faults,
        **(env or {}),
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "reference_service", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_python_env(child_env),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    token = cleanup.register(f"reference service :{port}", lambda: cleanup.stop_process(process))
    service = ReferenceService(f"http://127.0.0.1:{port}", port, database_url, redis_url, log_path, process, child_env)
    deadline = time.monotonic() + timeout_s
    # Any HTTP answer means it is up; whether it is *healthy* is for the checks to say.
    while time.monotonic() < deadline:
        if process.poll() is not None:
            cleanup.done(token)
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ServiceStartError(f"reference service exited with {process.returncode}: {tail[0]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{service.base_url}/health/live", timeout=5.0)  # a latency_ms fault may add seconds
            cleanup.done(token)
            return service
        time.sleep(0.1)
    service.stop()
    cleanup.done(token)
    raise ServiceStartError(
        f"reference service did not answer on port {port} within {timeout_s:.0f} s (log: {log_path})"
    )


@contextlib.contextmanager
def running_reference_service(**kwargs: object) -> Iterator[ReferenceService]:
    service = start_reference_service(**kwargs)  # type: ignore[arg-type]
    token = cleanup.register(f"reference service :{service.port}", service.stop)
    try:
        yield service
    finally:
        service.stop()
        cleanup.done(token)


def standalone(services: str = "auto") -> int:
    """`make sample`: the reference service in the foreground on its own throwaway servers."""
    import signal

    from opsverify.services import choose_provider

    provider = choose_provider(services)
    pg, rd = provider.start()
    token = cleanup.register(f"{provider.name} provider", provider.stop)
    try:
        with pg.throwaway_database() as url:
            migrate_and_seed(url)
            port = free_port()
            env = _python_env({"DATABASE_URL": url, "REDIS_URL": rd.url(), "REDIS_PREFIX": "sample:"})
            print(
                f"reference service on http://127.0.0.1:{port} ({provider.name} Postgres {pg.version}, "
                f"Redis {rd.version}); Ctrl-C stops it and removes everything",
                flush=True,
            )
            process = subprocess.Popen(
                [sys.executable, "-m", "reference_service", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
            try:
                signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
                process.wait()
            except KeyboardInterrupt:
                pass
            finally:
                cleanup.stop_process(process)
    finally:
        provider.stop()
        cleanup.done(token)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(standalone(os.environ.get("OPS_SERVICES", "auto")))
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
