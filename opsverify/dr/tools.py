"""Client tools: pg_dump / pg_restore / psql / pg_amcheck of the server's major version, run and watched.

The tools may run in a container (`docker exec -i <id>`), so archives are streamed through
stdin/stdout whenever they may.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from opsverify import procs
from opsverify.dr.errors import log
from opsverify.redact import redact
from opsverify.services import PostgresServer

PROGRESS_EVERY_S = 5.0
STDERR_TAIL_LINES = 12


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def path_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def progress(step: str, describe: Callable[[], str], every_s: float = PROGRESS_EVERY_S) -> Iterator[None]:
    """Log `step: <describe()>, <elapsed>` every few seconds while the block runs (weekly-job logs)."""
    started = time.monotonic()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):
                log.info("%s: %s, %.0f s elapsed", step, describe(), time.monotonic() - started)

    thread = threading.Thread(target=loop, name=f"progress-{step}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)
        log.info("%s: done in %.1f s (%s)", step, time.monotonic() - started, describe())


# ---------------------------------------------------------------------------------------------
# Client tools


@dataclass(frozen=True)
class PgClient:
    """Runs the server's client tools; knows whether they run on this host or in its container."""

    server: PostgresServer

    @property
    def in_container(self) -> bool:
        return self.server.tool("pg_dump")[0] == "docker"

    def argv(self, tool: str) -> list[str]:
        argv = self.server.tool(tool)
        if argv[0] == "docker":
            # Password from our environment, never on the command line.
            return [argv[0], argv[1], "-e", "PGPASSWORD", *argv[2:]]
        return argv

    def has(self, tool: str) -> bool:
        argv = self.server.tool(tool)
        if argv[0] == "docker":
            probe = subprocess.run([*argv[:-1], "sh", "-c", f"command -v {tool}"], capture_output=True, timeout=15)
            return probe.returncode == 0
        return Path(argv[0]).exists() or shutil.which(argv[0]) is not None

    def dsn(self, url: str) -> str:
        """The URL as the tool must see it, without the password (that goes in PGPASSWORD)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 5432
        if self.in_container:
            host, port = "127.0.0.1", 5432
        user = parts.username or "postgres"
        return f"postgresql://{user}@{host}:{port}{parts.path}"

    def env(self, url: str) -> dict[str, str]:
        env = dict(os.environ)
        password = unquote(urlsplit(url).password or "")
        if password:
            env["PGPASSWORD"] = password
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env


@dataclass
class ToolResult:
    returncode: int
    stderr_tail: list[str]
    elapsed_s: float

    def tail(self) -> str:
        return redact("\n".join(self.stderr_tail[-STDERR_TAIL_LINES:]) or "no output")


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    stdin_file: Path | None = None,
    stdin_feed: Callable[[Any], None] | None = None,
    stdout_path: Path | None = None,
    stdout_sink: Callable[[bytes], None] | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    shell: bool = False,
) -> ToolResult:
    """Run a tool with a hard timeout, stream its stderr (bounded tail kept), never raise on exit codes."""
    result = procs.run(
        argv, env=env, timeout_s=timeout_s, stdin_file=stdin_file, stdin_feed=stdin_feed,
        stdout_path=stdout_path, stdout_sink=stdout_sink, on_stderr_line=on_stderr_line, shell=shell,
    )
    return ToolResult(result.returncode, result.stderr_tail, result.elapsed_s)


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill {name} placeholders of a profile command with shell-quoted values; other braces stay."""
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", shlex.quote(value))
    return out
