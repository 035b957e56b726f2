"""Service providers: where the PostgreSQL and Redis servers for a run come from.

- containers: testcontainers (images from OPS_POSTGRES_IMAGE / OPS_REDIS_IMAGE);
- local:      throwaway servers from local binaries (pytest-postgresql / pytest-redis executors);
- external:   servers the user gives (OPS_DATABASE_URL / OPS_REDIS_URL); we only create and drop
              our own uniquely named databases there;
- auto:       containers if a Docker engine answers, else local, else one clear error.

All of them hand out a `PostgresServer` (throwaway databases cloned from templates, the
client tools of the server's major version) and a `RedisServer`.

Over 400 lines on purpose: four providers behind one Protocol, each short; splitting them would
scatter the one decision (where do servers come from) across files.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from opsverify import cleanup
from opsverify.errors import ProviderError
from opsverify.services.servers import (
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_REDIS_IMAGE,
    PG_BIN_ROOT,
    ContainerTools,
    PgConn,
    PostgresServer,
    RedisServer,
    ToolRunner,
    _redis_version,
    _server_version,
    free_port,
    host_tools_for,
    log,
)

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
