"""The servers a run uses: PostgreSQL (throwaway databases, client tools of its major version) and Redis."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
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
