"""Service providers: where the PostgreSQL and Redis servers for a run come from.

- containers: testcontainers (images from OPS_POSTGRES_IMAGE / OPS_REDIS_IMAGE);
- local:      throwaway servers from local binaries (pytest-postgresql / pytest-redis executors);
- external:   servers the user gives (OPS_DATABASE_URL / OPS_REDIS_URL); we only create and drop
              our own uniquely named databases there;
- auto:       containers if a Docker engine answers, else local, else one clear error.

All of them hand out a `PostgresServer` (throwaway databases cloned from templates, the
client tools of the server's major version) and a `RedisServer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

from opsverify import cleanup
from opsverify.errors import ProviderError

log = logging.getLogger("opsverify.services")

DEFAULT_POSTGRES_IMAGE = "postgres:16"
DEFAULT_REDIS_IMAGE = "redis:7"
# Every database the suite creates starts with this, so leftovers are recognisable as ours.
DB_PREFIX = "opsv_"
CONNECT_TIMEOUT_S = 5
PG_BIN_ROOT = Path("/usr/lib/postgresql")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass(frozen=True)
class PgConn:
    host: str
    port: int
    user: str
    password: str
    admin_db: str = "postgres"

    def url(self, dbname: str | None = None) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname or self.admin_db}"

    @classmethod
    def from_url(cls, url: str) -> PgConn:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ProviderError(
                f"OPS_DATABASE_URL: expected postgresql://user:password@host:port/db, got scheme '{parts.scheme}'"
            )
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            admin_db=(parts.path.lstrip("/") or "postgres"),
        )


def with_database(url: str, dbname: str) -> str:
    """Same server and credentials, another database."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{dbname}").geturl()


class ToolRunner(Protocol):
    def argv(self, tool: str) -> list[str]: ...


@dataclass(frozen=True)
class HostTools:
    """Client binaries on this machine, of a major version the server accepts."""

    bindir: Path

    def argv(self, tool: str) -> list[str]:
        return [str(self.bindir / tool)]


@dataclass(frozen=True)
class ContainerTools:
    """The server image's own client binaries, run with `docker exec -i` (stdin/stdout only)."""

    container_id: str

    def argv(self, tool: str) -> list[str]:
        return ["docker", "exec", "-i", self.container_id, tool]


def host_tools_for(major: int) -> HostTools | None:
    """pg_dump must not be older than the server; prefer the exact major, else the next newer."""
    candidates = []
    if PG_BIN_ROOT.is_dir():
        for child in PG_BIN_ROOT.iterdir():
            if child.name.isdigit() and (child / "bin" / "pg_dump").exists():
                candidates.append(int(child.name))
    usable = sorted(v for v in candidates if v >= major)
    if usable:
        return HostTools(PG_BIN_ROOT / str(usable[0]) / "bin")
    pg_dump = shutil.which("pg_dump")
    if pg_dump:
        out = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"(\d+)\.", out)
        if found and int(found.group(1)) >= major:
            return HostTools(Path(pg_dump).parent)
    return None


@dataclass
class PostgresServer:
    """A running server on which the suite may create and drop its own databases."""

    conn: PgConn
    provider: str
    version: str
    tools: ToolRunner | None
    _templates: dict[str, str] = field(default_factory=dict)
    _created: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def url(self, dbname: str | None = None) -> str:
        return self.conn.url(dbname)

    def connect(self, dbname: str | None = None, *, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)

    def tool(self, name: str) -> list[str]:
        if self.tools is None:
            raise ProviderError(
                f"no {name} for PostgreSQL {self.major} on this machine: install postgresql-client-{self.major} "
                f"or use --services containers"
            )
        return self.tools.argv(name)

    def create_database(self, *, template: str | None = None, name: str | None = None) -> str:
        dbname = name or f"{DB_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            # CREATE DATABASE ... TEMPLATE fails while anyone else is connected to the template.
            for attempt in range(20):
                try:
                    conn.execute(stmt)
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)
        with self._lock:
            self._created.add(dbname)
        return dbname

    def drop_database(self, dbname: str) -> None:
        if not dbname.startswith(DB_PREFIX):
            raise ProviderError(f"refusing to drop database {dbname!r}: the suite drops only its own ({DB_PREFIX}*)")
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        with self._lock:
            self._created.discard(dbname)

    @contextlib.contextmanager
    def throwaway_database(self, template: str | None = None) -> Iterator[str]:
        """A fresh database (cloned from `template` when given); yields its URL; always dropped."""
        dbname = self.create_database(template=template)
        token = cleanup.register(f"database {dbname}", lambda: self.drop_database(dbname))
        try:
            yield self.url(dbname)
        finally:
            with contextlib.suppress(Exception):
                self.drop_database(dbname)
            cleanup.done(token)

    def template(self, key: str, build: Callable[[str], None]) -> str:
        """A database built once per session by `build(url)` and cloned per test (~50 ms a clone)."""
        with self._lock:
            existing = self._templates.get(key)
        if existing:
            return existing
        dbname = self.create_database()
        try:
            build(self.url(dbname))
        except BaseException:
            self.drop_database(dbname)
            raise
        with self._lock:
            self._templates[key] = dbname
        return dbname

    def drop_all_created(self) -> None:
        with self._lock:
            names = list(self._created)
        for dbname in names:
            with contextlib.suppress(Exception):
                self.drop_database(dbname)

    def list_databases(self) -> list[str]:
        with self.connect() as conn:
            return [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1").fetchall()]

    def list_own_databases(self) -> list[str]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (DB_PREFIX + "%",)
            ).fetchall()
        return [r[0] for r in rows]


def _server_version(conn: PgConn, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(conn.url(), connect_timeout=CONNECT_TIMEOUT_S) as c:
                row = c.execute("SHOW server_version").fetchone()
                assert row is not None
                return str(row[0]).split()[0]
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.2)
    raise ProviderError(f"PostgreSQL at {conn.host}:{conn.port} did not answer within {timeout_s:.0f} s: {last}")


# ---------------------------------------------------------------------------------------------
# Redis


@dataclass
class RedisServer:
    host: str
    port: int
    password: str
    provider: str
    version: str
    # Keys of this run live under this prefix so a shared (external) server stays usable by others.
    prefix: str = field(default_factory=lambda: f"opsv:{secrets.token_hex(4)}:")

    def url(self, db: int = 0) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url(), socket_timeout=3, socket_connect_timeout=3)

    def delete_own_keys(self) -> None:
        client = self.client()
        try:
            for key in client.scan_iter(match=self.prefix + "*", count=500):
                client.delete(key)
        finally:
            client.close()


class _RedisReplyError(Exception):
    """An error reply (-ERR, -NOAUTH, -WRONGPASS, -LOADING ...)."""


def _resp_call(sock: socket.socket, reader: Any, *args: str) -> str:
    """One Redis command over RESP; the reply as text (errors raise)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    sock.sendall(b"".join(parts))
    line = reader.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"-":
        raise _RedisReplyError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return "" if size < 0 else reader.read(size + 2)[:size].decode(errors="replace")
    return rest.decode(errors="replace")


def _redis_version(host: str, port: int, password: str, timeout_s: float) -> str:
    """INFO server over a plain socket: readiness needs no client library (saves its import)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock, sock.makefile("rb") as reader:
                if password:
                    _resp_call(sock, reader, "AUTH", password)
                info = _resp_call(sock, reader, "INFO", "server")
            for line in info.splitlines():
                if line.startswith("redis_version:"):
                    return line.split(":", 1)[1].strip()
            raise OSError("INFO server has no redis_version")
        except _RedisReplyError as exc:
            last = exc
            if not str(exc).startswith("LOADING"):  # a refused password will not get better by waiting
                raise ProviderError(f"Redis at {host}:{port} refused the connection: {exc}") from None
            time.sleep(0.2)
        except (OSError, ValueError) as exc:
            last = exc
            time.sleep(0.2)
    raise ProviderError(f"Redis at {host}:{port} did not answer within {timeout_s:.0f} s: {last}")


# ---------------------------------------------------------------------------------------------
# Providers


class Provider(Protocol):
    name: str

    def check(self) -> None: ...

    def start(self) -> tuple[PostgresServer, RedisServer]: ...

    def stop(self) -> None: ...

    def describe(self) -> dict[str, str]: ...


def docker_answers(timeout_s: float = 5.0) -> bool:
    if not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def local_binaries() -> tuple[Path | None, Path | None]:
    """pg_ctl and redis-server; OPS_PG_BINDIR / OPS_REDIS_SERVER point at non-standard installs."""
    pg_bindir = os.environ.get("OPS_PG_BINDIR")
    redis_override = os.environ.get("OPS_REDIS_SERVER")
    if pg_bindir is not None or redis_override is not None:
        pg = Path(pg_bindir or "") / "pg_ctl" if pg_bindir else None
        rd = Path(redis_override) if redis_override else None
        if pg is None:
            pg = local_binaries_default()[0]
        if rd is None:
            rd = local_binaries_default()[1]
        return (pg if pg and pg.exists() else None), (rd if rd and rd.exists() else None)
    return local_binaries_default()


def local_binaries_default() -> tuple[Path | None, Path | None]:
    pg_ctl: Path | None = None
    if PG_BIN_ROOT.is_dir():
        versions = sorted((int(p.name) for p in PG_BIN_ROOT.iterdir() if p.name.isdigit()), reverse=True)
        for version in versions:
            candidate = PG_BIN_ROOT / str(version) / "bin" / "pg_ctl"
            if candidate.exists():
                pg_ctl = candidate
                break
    if pg_ctl is None and shutil.which("pg_ctl"):
        pg_ctl = Path(shutil.which("pg_ctl") or "")
    redis_bin = shutil.which("redis-server")
    return pg_ctl, Path(redis_bin) if redis_bin else None


def _stopper(thing: Any) -> Callable[[], None]:
    def stop() -> None:
        thing.stop()

    return stop


class ContainersProvider:
    name = "containers"

    def __init__(self) -> None:
        self.pg_image = os.environ.get("OPS_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE)
        self.redis_image = os.environ.get("OPS_REDIS_IMAGE", DEFAULT_REDIS_IMAGE)
        # pg_dump/pg_restore: this host's of a usable major version (auto), else the image's own;
        # `container` always takes the image's (the tools that match the server exactly).
        self.tools_from = os.environ.get("OPS_PG_TOOLS", "auto").strip().lower() or "auto"
        self._containers: list[tuple[Any, int]] = []

    def check(self) -> None:
        if self.tools_from not in ("auto", "container"):
            raise ProviderError(f"OPS_PG_TOOLS={self.tools_from!r}: expected auto or container")
        if not docker_answers():
            raise ProviderError(
                "--services containers: no Docker engine answers (start dockerd, or use --services local / external)"
            )

    def start(self) -> tuple[PostgresServer, RedisServer]:
        self.check()
        cleanup.install()
        if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ and not _image_present("testcontainers/ryuk"):
            # No reaper image and maybe no registry: our own cleanup registry removes the containers.
            os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        try:
            from testcontainers.community.postgres import PostgresContainer
            from testcontainers.community.redis import RedisContainer
        except ImportError:  # testcontainers < 4.10
            from testcontainers.postgres import PostgresContainer  # type: ignore[no-redef]
            from testcontainers.redis import RedisContainer  # type: ignore[no-redef]

        password = secrets.token_hex(12)
        pg = PostgresContainer(self.pg_image, username="postgres", password=password, dbname="postgres", driver=None)
        # fsync off: throwaway data, and it makes template clones and restores much faster.
        pg.with_command(
            "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        rd = RedisContainer(self.redis_image)
        for container, what in ((pg, self.pg_image), (rd, self.redis_image)):
            token = cleanup.register(f"container {what}", _stopper(container))
            try:
                container.start()
            except Exception as exc:
                self.stop()
                with contextlib.suppress(Exception):
                    container.stop()
                cleanup.done(token)
                raise ProviderError(f"could not start container {what}: {str(exc).splitlines()[0][:200]}") from None
            self._containers.append((container, token))
        host = pg.get_container_host_ip()
        conn = PgConn(host, int(pg.get_exposed_port(5432)), "postgres", password)
        version = _server_version(conn, 60)
        from opsverify.redact import register_secret

        register_secret(password)
        tools: ToolRunner | None = ContainerTools(pg.get_container_id())
        if self.tools_from != "container":
            tools = host_tools_for(int(version.split(".")[0])) or tools
        redis_host = rd.get_container_host_ip()
        redis_port = int(rd.get_exposed_port(6379))
        redis_version = _redis_version(redis_host, redis_port, "", 30)
        self._pg = pg
        return (
            PostgresServer(conn, self.name, version, tools),
            RedisServer(redis_host, redis_port, "", self.name, redis_version),
        )

    def stop(self) -> None:
        while self._containers:
            container, token = self._containers.pop()
            with contextlib.suppress(Exception):
                container.stop()
            cleanup.done(token)

    def describe(self) -> dict[str, str]:
        return {"postgres_image": self.pg_image, "redis_image": self.redis_image}


_PG_CTL_WRAPPER = """#!/bin/sh
# PostgreSQL refuses to run as root; a user namespace maps us to an unprivileged uid.
exec unshare -U --map-user=1000 --map-group=1000 {pg_ctl} "$@"
"""


class LocalProvider:
    name = "local"

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pg_exec: object | None = None
        self._redis_exec: object | None = None
        self._tokens: list[int] = []

    def check(self) -> None:
        pg_ctl, redis_bin = local_binaries()
        if pg_ctl is None or redis_bin is None:
            missing = " and ".join(n for n, p in (("pg_ctl", pg_ctl), ("redis-server", redis_bin)) if p is None)
            raise ProviderError(
                f"--services local: {missing} not found (install postgresql and redis-server or set "
                f"OPS_PG_BINDIR / OPS_REDIS_SERVER, or use --services containers / external)"
            )

    def start(self) -> tuple[PostgresServer, RedisServer]:
        self.check()
        # Whoever starts throwaway servers (a bench, `make sample`) removes them on SIGTERM too.
        cleanup.install()
        pg_ctl, redis_bin = local_binaries()
        assert pg_ctl is not None and redis_bin is not None
        from pytest_postgresql.executors.proc import PostgreSQLExecutor
        from pytest_redis.executor.process import RedisExecutor

        self._tmp = tempfile.TemporaryDirectory(prefix="opsverify-local-")
        tmp = Path(self._tmp.name)
        self._tokens.append(cleanup.register("local server dir", self._tmp.cleanup))
        executable = str(pg_ctl)
        if os.geteuid() == 0:
            if not shutil.which("unshare"):
                raise ProviderError(
                    "--services local as root needs unshare (util-linux) to run PostgreSQL unprivileged"
                )
            wrapper = tmp / "pg_ctl"
            wrapper.write_text(_PG_CTL_WRAPPER.format(pg_ctl=pg_ctl))
            wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
            executable = str(wrapper)
        port = free_port()
        pg_exec = PostgreSQLExecutor(
            executable=executable,
            host="127.0.0.1",
            port=port,
            datadir=str(tmp / "pgdata"),
            unixsocketdir=str(tmp),
            logfile=str(tmp / "postgresql.log"),
            startparams="-w",
            dbname="postgres",
            user="postgres",
            password=None,
            postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        )
        self._tokens.append(cleanup.register("local postgres", _stopper(pg_exec)))
        try:
            pg_exec.start()
        except Exception as exc:
            raise ProviderError(f"local PostgreSQL did not start: {exc} (log: {tmp / 'postgresql.log'})") from None
        self._pg_exec = pg_exec
        conn = PgConn("127.0.0.1", port, "postgres", "")
        version = _server_version(conn, 30)
        redis_port = free_port()
        redis_dir = tmp / "redis"
        redis_dir.mkdir()
        redis_exec = RedisExecutor(
            executable=str(redis_bin),
            databases=16,
            redis_timeout=30,
            loglevel="warning",
            host="127.0.0.1",
            port=redis_port,
            datadir=redis_dir,
        )
        self._tokens.append(cleanup.register("local redis", _stopper(redis_exec)))
        try:
            redis_exec.start()
        except Exception as exc:
            raise ProviderError(f"local Redis did not start: {exc}") from None
        self._redis_exec = redis_exec
        redis_version = _redis_version("127.0.0.1", redis_port, "", 30)
        major = int(version.split(".")[0])
        return (
            PostgresServer(conn, self.name, version, host_tools_for(major)),
            RedisServer("127.0.0.1", redis_port, "", self.name, redis_version),
        )

    def stop(self) -> None:
        for executor in (self._redis_exec, self._pg_exec):
            if executor is not None:
                with contextlib.suppress(Exception):
                    executor.stop()  # type: ignore[attr-defined]
        if self._tmp is not None:
            with contextlib.suppress(Exception):
                self._tmp.cleanup()
        for token in self._tokens:
            cleanup.done(token)
        self._tokens.clear()

    def describe(self) -> dict[str, str]:
        pg_ctl, redis_bin = local_binaries()
        return {"pg_ctl": str(pg_ctl), "redis_server": str(redis_bin)}


class ExternalProvider:
    name = "external"

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.database_url = env.get("OPS_DATABASE_URL", "")
        self.redis_url = env.get("OPS_REDIS_URL", "")

    def check(self) -> None:
        missing = [n for n, v in (("OPS_DATABASE_URL", self.database_url), ("OPS_REDIS_URL", self.redis_url)) if not v]
        if missing:
            raise ProviderError(
                f"--services external: set {' and '.join(missing)} (e.g. postgresql://user:pass@host:5432/postgres, "
                f"redis://host:6379/0)"
            )
        PgConn.from_url(self.database_url)

    def start(self) -> tuple[PostgresServer, RedisServer]:
        self.check()
        from opsverify.redact import register_secret

        conn = PgConn.from_url(self.database_url)
        if conn.password:
            register_secret(conn.password)
        version = _server_version(conn, 15)
        parts = urlsplit(self.redis_url)
        if parts.scheme not in ("redis", "rediss"):
            raise ProviderError(f"OPS_REDIS_URL: expected redis://host:port/db, got scheme '{parts.scheme}'")
        password = unquote(parts.password or "")
        if password:
            register_secret(password)
        host, port = parts.hostname or "127.0.0.1", parts.port or 6379
        redis_version = _redis_version(host, port, password, 15)
        major = int(version.split(".")[0])
        return (
            PostgresServer(conn, self.name, version, host_tools_for(major)),
            RedisServer(host, port, password, self.name, redis_version),
        )

    def stop(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        from opsverify.redact import redact

        return {"database_url": redact(self.database_url), "redis_url": redact(self.redis_url)}


def _image_present(repository: str) -> bool:
    try:
        out = subprocess.run(["docker", "images", "-q", repository], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(out.strip())


class AutoProvider:
    """Containers when an engine answers and the images can be had; else local binaries."""

    name = "auto"

    def __init__(self) -> None:
        self._chosen: Provider | None = None
        self.note = ""

    def check(self) -> None:
        if docker_answers():
            return
        pg_ctl, redis_bin = local_binaries()
        if pg_ctl and redis_bin:
            return
        raise ProviderError(
            "no PostgreSQL/Redis available: start a Docker engine (--services containers), install the postgresql "
            "and redis-server packages (--services local), or set OPS_DATABASE_URL and OPS_REDIS_URL "
            "(--services external)"
        )

    def start(self) -> tuple[PostgresServer, RedisServer]:
        self.check()
        pg_ctl, redis_bin = local_binaries()
        if docker_answers():
            containers = ContainersProvider()
            try:
                servers = containers.start()
                self._chosen = containers
                self.name = containers.name
                return servers
            except ProviderError as exc:
                if not (pg_ctl and redis_bin):
                    raise
                # A registry-less machine cannot pull the official images: local servers will do.
                self.note = f"containers unavailable ({exc}); using local server binaries"
                log.warning(self.note)
        local = LocalProvider()
        servers = local.start()
        self._chosen = local
        self.name = local.name
        return servers

    def stop(self) -> None:
        if self._chosen is not None:
            self._chosen.stop()

    def describe(self) -> dict[str, str]:
        info = self._chosen.describe() if self._chosen is not None else {}
        return {**info, **({"provider_note": self.note} if self.note else {})}


def choose_provider(mode: str) -> Provider:
    if mode == "containers":
        return ContainersProvider()
    if mode == "local":
        return LocalProvider()
    if mode == "external":
        return ExternalProvider()
    if mode != "auto":
        raise ProviderError(f"--services {mode}: expected auto, containers, local or external")
    return AutoProvider()
