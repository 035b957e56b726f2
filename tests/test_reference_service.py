"""Self-tests for the reference service (reference_service).

Every gate's self-test runs against this service and flips its faults to prove the gate goes
red, so the service has to keep each of its promises exactly. These tests run it the way the
suite does: as a real uvicorn subprocess on a free port, against the real PostgreSQL and Redis
named by OPS_TEST_DATABASE_URL / OPS_TEST_REDIS_URL, in a database created for this module.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_DIR = REPO_ROOT / "reference_service"
ALEMBIC_INI = SERVICE_DIR / "alembic.ini"

ADMIN_DATABASE_URL = os.environ.get("OPS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("OPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

HEAD = "5a0e0006"
REVISIONS = ["5a0e0001", "5a0e0002", "5a0e0003", "5a0e0004", "5a0e0005", "5a0e0006"]
DATA_MIGRATION = "5a0e0005"
LIVENESS_PATHS = ["/healthz", "/health", "/health/live", "/live"]
READINESS_PATHS = ["/health/ready", "/ready", "/api/health", "/api/health/"]
METRICS_TOKEN = "selftest-metrics-token"

CONNECT_TIMEOUT_S = 3
HTTP_TIMEOUT_S = 5.0
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CLI_TIMEOUT_S = 60.0
OUTBOX_POLL_MS = 50
# Variables the service reads; scrubbed from the inherited environment so a developer's shell
# (say, SAMPLE_FAULTS left exported) cannot change what a test proves.
SERVICE_ENV_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PREFIX",
    "SAMPLE_FAULTS",
    "SAMPLE_METRICS_TOKEN",
    "MAINTENANCE_MODE",
    "READ_ONLY_MODE",
    "MAX_REQUEST_BODY_BYTES",
    "INGEST_MAX_BATCH_ITEMS",
    "RATE_LIMIT_PER_SEC",
    "CACHE_TTL_S",
    "OUTBOX_POLL_MS",
    "JWT_SECRET",
    "STATEMENT_TIMEOUT_MS",
    "DB_POOL_MAX_SIZE",
    "MIGRATION_LOCK_TIMEOUT",
    "MIGRATION_STATEMENT_TIMEOUT",
)

pytestmark = pytest.mark.timeout(180)


# --- engine ---------------------------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url(scheme: str, rest: str = "") -> str:
    """A URL nothing listens on: the port was free a moment ago and we never bind it."""
    return f"{scheme}://127.0.0.1:{free_port()}{rest}"


def explain(what: str, response: httpx.Response, expected: str) -> str:
    """Labelled failure context: what we wanted, what came back, and how to find it in the log."""
    return (
        f"{what}\n"
        f"  expected : {expected}\n"
        f"  got      : {response.status_code} {response.text[:400]!r}\n"
        f"  request  : {response.request.method} {response.request.url}\n"
        f"  x-request-id: {response.headers.get('x-request-id')}\n"
        f"  elapsed  : {response.elapsed.total_seconds() * 1000:.0f} ms"
    )


def parse_metrics(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of the Prometheus text format."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout_s`."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout_s:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"{what}: not true within {timeout_s:g}s (last value: {last!r})")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_VARS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def run_cli(*args: str, timeout_s: float = CLI_TIMEOUT_S, **env: str) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "reference_service", *args],
        cwd=REPO_ROOT,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class RunningService:
    base_url: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    http: httpx.Client
    _files: list[IO[bytes]] = field(default_factory=list)

    def log_lines(self) -> list[str]:
        return self.stdout_path.read_text().splitlines()

    def log_tail(self, lines: int = 20) -> str:
        out = "\n".join(self.log_lines()[-lines:])
        err = "\n".join(self.stderr_path.read_text().splitlines()[-lines:])
        return f"--- stdout (last {lines}) ---\n{out}\n--- stderr (last {lines}) ---\n{err}"

    def metrics(self) -> dict[str, float]:
        response = self.http.get("/metrics", headers={"X-Metrics-Token": METRICS_TOKEN})
        assert response.status_code == 200, explain("scrape /metrics", response, "200")
        return parse_metrics(response.text)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S; return the exit code."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        for handle in self._files:
            handle.close()
        return int(self.process.returncode)


class ServiceLauncher:
    """Starts service subprocesses and owns them: close() stops every one still running."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._running: list[RunningService] = []

    def start(self, **env: str) -> RunningService:
        port = free_port()
        name = f"svc-{port}-{uuid.uuid4().hex[:6]}"
        stdout_path = self.workdir / f"{name}.stdout"
        stderr_path = self.workdir / f"{name}.stderr"
        # Files, not pipes: a chatty service can never block on a full pipe buffer.
        out, err = stdout_path.open("wb"), stderr_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "reference_service", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=service_env(**env),
            stdout=out,
            stderr=err,
        )
        base_url = f"http://127.0.0.1:{port}"
        # trust_env=False: an HTTP(S)_PROXY in the environment must not intercept localhost.
        http = httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S, trust_env=False)
        service = RunningService(base_url, process, stdout_path, stderr_path, http, [out, err])
        self._running.append(service)
        self._wait_until_answering(service)
        return service

    def _wait_until_answering(self, service: RunningService) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                pytest.fail(f"service exited with {service.process.returncode} before answering\n{service.log_tail()}")
            try:
                # Any HTTP answer counts: a health fault may make the answer a 503.
                service.http.get("/healthz", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"service did not answer within {START_TIMEOUT_S:g}s\n{service.log_tail()}")

    def close(self) -> None:
        for service in self._running:
            service.stop()
        self._running.clear()


class DatabaseFactory:
    """Creates uniquely named databases and drops every one of them in close()."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._created: list[str] = []

    def create(self, migrate_to: str | None = None) -> str:
        name = f"opsverify_sample_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self._created.append(name)
        url = with_database(self.admin_url, name)
        if migrate_to:
            command.upgrade(alembic_config(url), migrate_to)
        return url

    def close(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
            for name in self._created:
                # FORCE: a service process that outlived its test must not keep the DB alive.
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # Keep Alembic's fileConfig away from pytest's logging setup.
    config.attributes["configure_logger"] = False
    return config


def tables(url: str) -> set[str]:
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def current_revision(url: str) -> str | None:
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def databases() -> Iterator[DatabaseFactory]:
    try:
        psycopg.connect(ADMIN_DATABASE_URL, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL unreachable at OPS_TEST_DATABASE_URL ({exc.__class__.__name__})")
    factory = DatabaseFactory(ADMIN_DATABASE_URL)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to this module; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        pytest.skip(f"Redis unreachable at OPS_TEST_REDIS_URL ({exc.__class__.__name__})")
    prefix = f"opsverify-selftest-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def app_db(databases: DatabaseFactory) -> str:
    """A database migrated and seeded through the CLI, exactly as an operator would."""
    url = databases.create()
    migrated = run_cli("migrate", DATABASE_URL=url)
    assert migrated.returncode == 0, f"migrate failed:\n{migrated.stderr}"
    seeded = run_cli("seed", "--rows", "50", DATABASE_URL=url)
    assert seeded.returncode == 0, f"seed failed:\n{seeded.stderr}"
    return url


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLauncher]:
    launcher = ServiceLauncher(tmp_path_factory.mktemp("sample_service"))
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[ServiceLauncher]:
    """For tests that need their own configuration; stopped when the test ends."""
    owned = ServiceLauncher(tmp_path)
    try:
        yield owned
    finally:
        owned.close()


def base_env(database_url: str, redis_prefix: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": TEST_REDIS_URL,
        # Each instance gets its own prefix so caches and rate windows never cross tests.
        "REDIS_PREFIX": f"{redis_prefix}{uuid.uuid4().hex[:6]}:",
        "OUTBOX_POLL_MS": str(OUTBOX_POLL_MS),
        "JWT_SECRET": "selftest-jwt-secret-that-is-at-least-32-bytes",
        **extra,
    }


@pytest.fixture(scope="module")
def service(module_launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> RunningService:
    """The default instance: stock limits, metrics behind a token."""
    return module_launcher.start(**base_env(app_db, redis_prefix, SAMPLE_METRICS_TOKEN=METRICS_TOKEN))


def new_item(**overrides: Any) -> dict[str, Any]:
    item = {"name": "Widget Selftest", "sku": f"T-{uuid.uuid4().hex[:12]}", "price_cents": 1250}
    item.update(overrides)
    return item


# --- migrations -----------------------------------------------------------------------------


def test_migrations_upgrade_to_head_and_back_to_base(databases: DatabaseFactory) -> None:
    """Every revision upgrades and downgrades on its own, so `alembic downgrade -1` is a real
    rollback option at every step of the release checklist."""
    url = databases.create()
    config = alembic_config(url)
    for revision in REVISIONS:
        command.upgrade(config, revision)
        assert current_revision(url) == revision, f"after upgrade to {revision}"
    assert {"items", "outbox"} <= tables(url), f"tables at head: {sorted(tables(url))}"

    # Downgrade through a caller-owned connection, the path test harnesses use. It must not be
    # inside a transaction (engine.connect(), not engine.begin()): revision 5a0e0003 drops its
    # index CONCURRENTLY in an autocommit block.
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool)
    try:
        for expected in [*reversed(REVISIONS[:-1]), None]:
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                command.downgrade(config, "-1")
            assert current_revision(url) == expected, f"after downgrade to {expected or 'base'}"
    finally:
        config.attributes.pop("connection", None)
        engine.dispose()
    assert tables(url) == {"alembic_version"}, f"left behind at base: {sorted(tables(url))}"


def test_data_migration_backfills_category_and_is_marked(databases: DatabaseFactory) -> None:
    """The one data migration is flagged `data_change = True` (the migration gate demands a
    backup rehearsal for it) and only rewrites rows still on the default category."""
    script = ScriptDirectory.from_config(alembic_config(ADMIN_DATABASE_URL))
    flagged = sorted(s.revision for s in script.walk_revisions() if getattr(s.module, "data_change", False))
    assert flagged == [DATA_MIGRATION], f"revisions marked data_change: {flagged}"
    assert [s.revision for s in reversed(list(script.walk_revisions()))] == REVISIONS

    url = databases.create(migrate_to="5a0e0004")
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(
            "INSERT INTO items (name, sku, price_cents, category) VALUES"
            " ('Widget One', 'DM-1', 1, DEFAULT), ('Gadget Two', 'DM-2', 1, DEFAULT),"
            " ('Widget Three', 'DM-3', 1, 'clearance'), ('Plain Four', 'DM-4', 1, DEFAULT)"
        )
    command.upgrade(alembic_config(url), HEAD)
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        got: dict[str, str] = dict(conn.execute("SELECT sku, category FROM items ORDER BY sku").fetchall())
    assert got == {
        "DM-1": "widgets",
        "DM-2": "gadgets",
        "DM-3": "clearance",
        "DM-4": "general",
    }, f"categories after {DATA_MIGRATION}: {got}"


def test_offline_sql_builds_unique_index_concurrently() -> None:
    """`alembic upgrade head --sql` works without a database and keeps the safe forms: lock
    and statement timeouts first, the sku index built CONCURRENTLY outside a transaction."""
    buffer = io.StringIO()
    config = Config(str(ALEMBIC_INI), output_buffer=buffer)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert sql.lstrip().startswith("SET lock_timeout"), f"script starts with: {sql[:120]!r}"
    assert "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_sku_key ON items (sku)" in sql


def _squawk() -> str | None:
    return shutil.which("squawk") or shutil.which("squawk", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_squawk() is None, reason="squawk-cli not installed")
def test_each_revision_is_squawk_clean() -> None:
    """Each revision's SQL passes squawk, the linter the migration gate runs."""
    squawk = _squawk()
    assert squawk is not None
    previous = "base"
    for revision in REVISIONS:
        buffer = io.StringIO()
        config = Config(str(ALEMBIC_INI), output_buffer=buffer)
        config.attributes["configure_logger"] = False
        command.upgrade(config, f"{previous}:{revision}", sql=True)
        # Alembic's own bookkeeping table (VARCHAR(32)) is not ours to lint.
        sql = re.sub(r"CREATE TABLE alembic_version \(.*?\);", "", buffer.getvalue(), flags=re.S)
        lint = subprocess.run([squawk, "--reporter", "gcc"], input=sql, capture_output=True, text=True, timeout=30)
        assert lint.returncode == 0, f"squawk on {previous}:{revision}:\n{lint.stdout}{lint.stderr}"
        previous = revision


def test_cli_fails_with_one_clear_line_when_database_unreachable() -> None:
    """An operator running migrate/seed against a dead DATABASE_URL gets one line naming the
    target, not a 60-line traceback, and a non-zero exit for the deploy script."""
    dead = closed_port_url("postgresql", "/nowhere")
    for args in (["migrate"], ["seed", "--rows", "3"]):
        result = run_cli(*args, DATABASE_URL=dead)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, f"{args}: exit {result.returncode}\n{result.stderr}"
        assert len(lines) == 1 and "Traceback" not in result.stderr, f"{args}:\n{result.stderr}"
        assert "cannot connect to database" in lines[0] and "/nowhere" in lines[0], lines[0]


def test_seed_is_idempotent_and_tops_up(app_db: str) -> None:
    """Re-running seed adds only missing rows, so a restore drill can seed without dupes."""
    from reference_service import seed

    assert seed(app_db, 50) == 0, "the app_db fixture already seeded 50 rows"
    assert seed(app_db, 60) == 10


# --- probes ---------------------------------------------------------------------------------


def test_liveness_answers_ok_on_every_runbook_path(service: RunningService) -> None:
    """Each runbook curls a different liveness path; all must say ok."""
    for path in LIVENESS_PATHS:
        response = service.http.get(path)
        assert response.status_code == 200, explain(f"liveness {path}", response, "200")
        assert response.json() == {"status": "ok"}, explain(f"liveness {path}", response, "ok")


def test_readiness_checks_database_and_redis(service: RunningService) -> None:
    """Readiness proves both dependencies answer, on every path a runbook or LB uses."""
    for path in READINESS_PATHS:
        response = service.http.get(path)
        assert response.status_code == 200, explain(f"readiness {path}", response, "200 ready")
        body = response.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "redis": "ok"}, explain(path, response, "ok/ok")


def test_metrics_require_token_and_expose_runbook_families(service: RunningService) -> None:
    """/metrics is token-gated and carries every family the runbooks grep for, with the route
    template (not the raw id) as the path label."""
    assert service.http.get("/metrics").status_code == 401
    assert service.http.get("/metrics", headers={"X-Metrics-Token": "wrong"}).status_code == 401
    service.http.get("/api/items/987654321")
    response = service.http.get("/metrics", headers={"X-Metrics-Token": METRICS_TOKEN})
    assert response.status_code == 200, explain("metrics with token", response, "200")
    text = response.text
    for family in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_slow_requests_total",
        "outbox_pending",
        "outbox_dead_total",
        "loyalty_outbox_pending",
        "loyalty_outbox_dead_total",
        "external_requests_total",
        "portal_auth_login_total",
        "portal_auth_refresh_total",
    ):
        assert re.search(rf"^{family}[{{ ]", text, re.M), f"family {family} missing from /metrics"
    assert 'path="/api/items/{item_id}"' in text
    assert "987654321" not in text, "raw ids leaked into metric labels"


# --- items ----------------------------------------------------------------------------------


def test_item_crud_with_read_through_cache(service: RunningService) -> None:
    """Create, read (MISS then HIT), list, delete, and the delete invalidates the cache."""
    item = new_item(category="widgets")
    created = service.http.post("/api/items", json=item)
    assert created.status_code == 201, explain("create item", created, "201")
    body = created.json()
    assert {k: body[k] for k in item} == item
    assert set(body) == {"id", "name", "sku", "price_cents", "category", "created_at"}
    path = f"/api/items/{body['id']}"

    first = service.http.get(path)
    second = service.http.get(path)
    assert first.headers.get("x-cache") == "MISS", explain("first read", first, "X-Cache: MISS")
    assert second.headers.get("x-cache") == "HIT", explain("second read", second, "X-Cache: HIT")
    assert first.json() == second.json() == body

    listed = service.http.get("/api/items", params={"limit": 100})
    assert listed.status_code == 200 and listed.json()["count"] == len(listed.json()["items"])

    deleted = service.http.delete(path)
    assert deleted.status_code == 204, explain("delete", deleted, "204")
    gone = service.http.get(path)
    assert gone.status_code == 404, explain("read after delete", gone, "404 (cache invalidated)")
    assert gone.json() == {"code": "NOT_FOUND"}
    assert service.http.delete(path).status_code == 404


def test_item_without_category_gets_default(service: RunningService) -> None:
    created = service.http.post("/api/items", json=new_item())
    assert created.status_code == 201, explain("create", created, "201")
    assert created.json()["category"] == "general"


def test_invalid_item_is_422(service: RunningService) -> None:
    for bad in (new_item(name=""), new_item(price_cents=-1), new_item(price_cents="12"), {"sku": "x"}):
        response = service.http.post("/api/items", json=bad)
        assert response.status_code == 422, explain(f"create {bad}", response, "422")
    assert service.http.get("/api/items", params={"limit": 101}).status_code == 422


def test_oversized_body_is_413(service: RunningService) -> None:
    """MAX_REQUEST_BODY_BYTES (64 KiB by default) turns a huge body into 413, declared or not."""
    payload = json.dumps(new_item(name="x" * 70_000)).encode()
    response = service.http.post("/api/items", content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, explain("70 KB body", response, "413 PAYLOAD_TOO_LARGE")
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the guard has to count the bytes that actually arrive.
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    streamed = service.http.post("/api/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, explain("chunked 70 KB body", streamed, "413")


def test_ingest_accepts_a_batch_and_refuses_an_oversized_one(service: RunningService) -> None:
    """Ingest writes a batch in one go; above INGEST_MAX_BATCH_ITEMS (100) it answers 413."""
    accepted = service.http.post("/api/ingest", json={"items": [new_item() for _ in range(5)]})
    assert accepted.status_code == 202, explain("ingest 5", accepted, "202")
    assert accepted.json() == {"accepted": 5}
    refused = service.http.post("/api/ingest", json={"items": [new_item() for _ in range(101)]})
    assert refused.status_code == 413, explain("ingest 101", refused, "413 BATCH_TOO_LARGE")
    assert refused.json()["code"] == "BATCH_TOO_LARGE"


def test_request_id_is_echoed_or_generated(service: RunningService) -> None:
    """Operators trace incidents by X-Request-Id; it must round-trip, or be minted."""
    echoed = service.http.get("/healthz", headers={"X-Request-Id": "trace-abc-123"})
    assert echoed.headers.get("x-request-id") == "trace-abc-123"
    generated = service.http.get("/api/items/0")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers.get("x-request-id", "")), explain(
        "no incoming id", generated, "uuid4 hex X-Request-Id"
    )


def test_outbox_drains_to_zero(service: RunningService) -> None:
    """The worker delivers what the API enqueues; pending returns to 0 within a few polls."""
    assert service.http.post("/api/items", json=new_item()).status_code == 201
    wait_for(
        lambda: service.metrics().get("outbox_pending") == 0.0,
        timeout_s=5.0,
        what="outbox_pending back to 0",
    )
    assert service.metrics().get("loyalty_outbox_pending") == 0.0


def test_access_log_is_json_without_secrets(service: RunningService) -> None:
    """One JSON object per request with the runbook's fields, and never a header value."""
    marker = f"trace-{uuid.uuid4().hex}"
    service.http.get("/metrics", headers={"X-Metrics-Token": METRICS_TOKEN, "X-Request-Id": marker})
    records = wait_for(
        lambda: [r for r in map(json.loads, service.log_lines()) if r.get("request_id") == marker],
        timeout_s=2.0,
        what="access log line for the request",
    )
    (record,) = records
    assert {"ts", "level", "msg", "method", "path", "status", "duration_ms", "client"} <= set(record)
    assert (record["msg"], record["path"], record["status"]) == ("request", "/metrics", 200)
    log_text = service.stdout_path.read_text()
    assert METRICS_TOKEN not in log_text and "selftest-jwt-secret" not in log_text


# --- modes and limits (their own instances) -------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """Above RATE_LIMIT_PER_SEC a client gets 429 + Retry-After; other clients and probes are
    unaffected."""
    svc = launcher.start(**base_env(app_db, redis_prefix, RATE_LIMIT_PER_SEC="5"))
    client = {"X-Client-Id": "noisy"}
    statuses = [svc.http.get("/api/items", params={"limit": 1}, headers=client) for _ in range(20)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, f"20 requests at limit 5/s; statuses: {[r.status_code for r in statuses]}"
    assert limited[0].json() == {"code": "RATE_LIMITED"}
    retry_after = limited[0].headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, f"Retry-After: {retry_after!r}"
    assert svc.http.get("/api/items", headers={"X-Client-Id": "quiet"}).status_code == 200
    assert svc.http.get("/api/health", headers=client).status_code == 200


def test_maintenance_mode_blocks_all_but_probes(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """MAINTENANCE_MODE=1 sheds load with 503 while probes and metrics keep answering."""
    svc = launcher.start(**base_env(app_db, redis_prefix, MAINTENANCE_MODE="1"))
    for method, path in (("GET", "/api/items"), ("POST", "/api/items"), ("GET", "/docs")):
        response = svc.http.request(method, path, json=new_item() if method == "POST" else None)
        assert response.status_code == 503, explain(f"{method} {path}", response, "503 MAINTENANCE")
        assert response.json()["code"] == "MAINTENANCE"
    for path in ("/healthz", "/health/ready", "/metrics"):
        response = svc.http.get(path)
        assert response.status_code == 200, explain(f"{path} in maintenance", response, "200")


def test_read_only_mode_allows_reads_only(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """READ_ONLY_MODE=1: GET/HEAD/OPTIONS work, writes get 503 READ_ONLY."""
    svc = launcher.start(**base_env(app_db, redis_prefix, READ_ONLY_MODE="1"))
    assert svc.http.get("/api/items").status_code == 200
    for method, path in (("POST", "/api/items"), ("DELETE", "/api/items/1"), ("POST", "/api/ingest")):
        response = svc.http.request(method, path, json={"items": []} if method == "POST" else None)
        assert response.status_code == 503, explain(f"{method} {path}", response, "503 READ_ONLY")
        assert response.json()["code"] == "READ_ONLY"


def test_serve_starts_while_dependencies_are_down(launcher: ServiceLauncher) -> None:
    """With PostgreSQL and Redis unreachable the service still starts, stays live, reports
    not-ready naming both, answers item calls 503, and its limiter fails open."""
    svc = launcher.start(
        DATABASE_URL=closed_port_url("postgresql", "/nowhere"),
        REDIS_URL=closed_port_url("redis", "/0"),
        RATE_LIMIT_PER_SEC="1",
    )
    assert svc.http.get("/healthz").status_code == 200
    ready = svc.http.get("/health/ready")
    assert ready.status_code == 503, explain("readiness, deps down", ready, "503")
    assert set(ready.json()["failed"]) == {"database", "redis"}, ready.text
    items = svc.http.get("/api/items")
    assert items.status_code == 503 and items.json()["code"] == "DB_UNAVAILABLE", items.text
    # Invalid bodies never reach the DB, so these isolate the limiter: 422, never 429.
    statuses = [svc.http.post("/api/items", json={}).status_code for _ in range(3)]
    assert statuses == [422, 422, 422], f"limit 1/s with Redis down (must fail open): {statuses}"


def test_shutdown_is_graceful_and_logged(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """SIGTERM stops the worker within its 1 s budget and the process exits promptly."""
    svc = launcher.start(**base_env(app_db, redis_prefix))
    started = time.monotonic()
    svc.stop()
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"shutdown took {elapsed:.1f}s\n{svc.log_tail()}"
    last = json.loads(svc.log_lines()[-1])
    assert last["msg"] == "shutdown" and last["outbox_worker_stopped"] is True, svc.log_tail()


# --- faults ---------------------------------------------------------------------------------


def test_fault_health_503_fails_every_liveness_path(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    svc = launcher.start(**base_env(app_db, redis_prefix, SAMPLE_FAULTS="health=503"))
    for path in LIVENESS_PATHS:
        response = svc.http.get(path)
        assert response.status_code == 503, explain(f"{path} with health=503", response, "503")


def test_fault_db_down_fails_readiness_and_items(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    svc = launcher.start(**base_env(app_db, redis_prefix, SAMPLE_FAULTS="db=down"))
    ready = svc.http.get("/health/ready")
    assert ready.status_code == 503, explain("readiness with db=down", ready, "503")
    assert ready.json()["failed"] == ["database"] and ready.json()["checks"]["redis"] == "ok"
    items = svc.http.get("/api/items")
    assert items.status_code == 503 and items.json()["code"] == "DB_UNAVAILABLE", items.text
    samples = parse_metrics(svc.http.get("/metrics").text)
    # Absent, not 0: a made-up 0 would let an "outbox drained" check pass during an outage.
    assert "outbox_pending" not in samples, f"outbox_pending={samples.get('outbox_pending')}"


def test_fault_outbox_stuck_keeps_pending(
    launcher: ServiceLauncher, databases: DatabaseFactory, redis_prefix: str
) -> None:
    """outbox=stuck: rows stay pending, which is what the outbox-growth alert must catch."""
    # Its own database: a healthy instance's worker on a shared DB would deliver the rows.
    url = databases.create(migrate_to="head")
    svc = launcher.start(**base_env(url, redis_prefix, SAMPLE_FAULTS="outbox=stuck"))
    assert svc.http.post("/api/items", json=new_item()).status_code == 201
    time.sleep(OUTBOX_POLL_MS * 6 / 1000)
    metrics = parse_metrics(svc.http.get("/metrics").text)
    assert metrics.get("outbox_pending", 0) >= 1, f"outbox_pending={metrics.get('outbox_pending')}"
    assert metrics.get("loyalty_outbox_pending", 0) >= 1


def test_fault_latency_delays_without_blocking(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """latency_ms delays each request but not each other (single worker), skips /metrics, and
    shows up as slow requests."""
    svc = launcher.start(**base_env(app_db, redis_prefix, SAMPLE_FAULTS="latency_ms=600"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = list(pool.map(lambda _: svc.http.get("/healthz").status_code, range(5)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 5
    # Serialised they would need 3.0 s; concurrent, a little over 0.6 s.
    assert 0.6 <= elapsed < 2.0, f"5 concurrent delayed requests took {elapsed:.2f}s (serialised?)"
    scrape = svc.http.get("/metrics")
    assert scrape.elapsed.total_seconds() < 0.6, "/metrics must not be delayed"
    assert parse_metrics(scrape.text)["http_slow_requests_total"] >= 5


def test_fault_switches_disable_their_guards(launcher: ServiceLauncher, app_db: str, redis_prefix: str) -> None:
    """A "broken deploy": each switch disables exactly its guard. The oversized write below
    would be 503 MAINTENANCE, 503 READ_ONLY, 413 or 429 if any guard were still on; with
    error_rate=1 it reaches the injected 500 instead."""
    faults = (
        "ready=500,metrics=off,request_id=off,size_limit=off,rate_limit=off,"
        "readonly=ignore,maintenance=ignore,error_rate=1"
    )
    svc = launcher.start(
        **base_env(
            app_db,
            redis_prefix,
            SAMPLE_FAULTS=faults,
            MAINTENANCE_MODE="1",
            READ_ONLY_MODE="1",
            RATE_LIMIT_PER_SEC="1",
            MAX_REQUEST_BODY_BYTES="1024",
        )
    )
    ready = svc.http.get("/health/ready")
    assert ready.status_code == 500, explain("readiness with ready=500", ready, "500")
    assert svc.http.get("/metrics").status_code == 404
    assert "x-request-id" not in svc.http.get("/healthz").headers
    for _ in range(3):
        response = svc.http.post("/api/items", json=new_item(name="x" * 2000))
        assert response.status_code == 500, explain("guarded write", response, "500 INJECTED_ERROR")
        assert response.json() == {"code": "INJECTED_ERROR"}


def test_fault_redis_down_bypasses_cache_and_outbox_dead_counts(
    launcher: ServiceLauncher, databases: DatabaseFactory, redis_prefix: str
) -> None:
    """redis=down: readiness names redis, reads skip the cache (MISS, MISS) but still work.
    outbox=dead: rows are dead-lettered and both dead counters move."""
    url = databases.create(migrate_to="head")
    svc = launcher.start(**base_env(url, redis_prefix, SAMPLE_FAULTS="redis=down,outbox=dead"))
    ready = svc.http.get("/ready")
    assert ready.status_code == 503 and ready.json()["failed"] == ["redis"], ready.text
    created = svc.http.post("/api/items", json=new_item())
    assert created.status_code == 201, explain("create with redis=down", created, "201")
    path = f"/api/items/{created.json()['id']}"
    caches = [svc.http.get(path).headers.get("x-cache") for _ in range(2)]
    assert caches == ["MISS", "MISS"], f"X-Cache with Redis down: {caches}"
    samples = wait_for(
        lambda: (m := parse_metrics(svc.http.get("/metrics").text)).get("outbox_dead_total") and m,
        timeout_s=5.0,
        what="outbox_dead_total > 0",
    )
    assert samples["loyalty_outbox_dead_total"] == samples["outbox_dead_total"] >= 1
    assert samples['external_requests_total{provider="merchant_webhook",result="error"}'] >= 1


def test_unknown_fault_refuses_to_start() -> None:
    """A typo in SAMPLE_FAULTS must stop the start-up, not run a healthy service silently."""
    result = run_cli("serve", "--port", str(free_port()), SAMPLE_FAULTS="helth=503", timeout_s=20)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "helth" in lines[0], result.stderr
