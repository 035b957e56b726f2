"""Backup / restore drills: find or take a backup, prove it reads, restore it, prove it is the same.

Plain Python over the real tools: pg_dump / pg_restore / psql / pg_amcheck of the server's major
version (`PostgresServer.tool`, possibly `docker exec -i <id>`, so archives are streamed through
stdin/stdout whenever the tool may run in a container), and redis-server for the RDB round trip.

A `DrillRun` owns one drill: each step runs once, its result (or its failure) is remembered, and a
later step that needs an earlier one re-raises that step's failure as a `StepError` naming it, so a
report says "backup step failed" instead of an unrelated traceback three steps later.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import enum
import gzip
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from opsverify import cleanup
from opsverify.errors import OpsError
from opsverify.redact import redact
from opsverify.services import PostgresServer, free_port

log = logging.getLogger("opsverify.dr")

PROGRESS_EVERY_S = 5.0
STDERR_TAIL_LINES = 12
# Tables bigger than this are fingerprinted in block ranges on several connections.
SPLIT_TABLE_PAGES = 2048
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
BACKUP_SUFFIXES = (".dump", ".backup", ".bak", ".pgdump", ".sql", ".gz", ".tar", ".custom", ".pgd", ".psql")
IGNORED_SUFFIXES = (".sha256", ".md5", ".sha1", ".log", ".txt", ".json", ".yml", ".yaml", ".sig", ".asc", ".lock")
# 20240115_020000, 20240115T020000Z, 2024-01-15T02-00-00, 2024-01-15_02:00, 20240115
_STAMP = re.compile(
    r"(?<!\d)(?P<y>20\d{2})-?(?P<m>[01]\d)-?(?P<d>[0-3]\d)"
    r"(?:[T_\-. ]?(?P<H>[0-2]\d)[-:.]?(?P<M>[0-5]\d)(?:[-:.]?(?P<S>[0-5]\d))?)?(?!\d)"
)
PLAIN_SQL_DONE = (b"PostgreSQL database dump complete", b"PostgreSQL database cluster dump complete")


class DrError(OpsError):
    """A drill step could not do its work; the message names what and what to do."""


class StepError(OpsError):
    """A step failed. `step` is the step that owns the failure (not the one that asked for it)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = redact(message)

    @property
    def headline(self) -> str:
        return self.message.splitlines()[0] if self.message else self.step


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
    on_stderr_line: Callable[[str], None] | None = None,
    shell: bool = False,
) -> ToolResult:
    """Run a tool with a hard timeout, stream its stderr (bounded tail kept), never raise on exit codes."""
    started = time.monotonic()
    stdin: Any = subprocess.DEVNULL
    opened: list[Any] = []
    if stdin_file is not None:
        stdin = stdin_file.open("rb")
        opened.append(stdin)
    elif stdin_feed is not None:
        stdin = subprocess.PIPE
    stdout: Any = subprocess.DEVNULL
    if stdout_path is not None:
        stdout = stdout_path.open("wb")
        opened.append(stdout)
    proc = subprocess.Popen(
        argv if not shell else argv[0],  # type: ignore[arg-type]
        env=dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        shell=shell,
        start_new_session=True,
    )
    token = cleanup.register(f"tool {Path(str(argv[0])).name}", lambda: cleanup.stop_process(proc))
    tail: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if on_stderr_line is not None:
                with contextlib.suppress(Exception):
                    on_stderr_line(line)
            tail.append(line)
            if len(tail) > 200:
                del tail[:100]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    timer = threading.Timer(timeout_s, lambda: cleanup.stop_process(proc))
    timer.start()
    try:
        if stdin_feed is not None:
            assert proc.stdin is not None
            try:
                stdin_feed(proc.stdin)
            except BrokenPipeError:
                pass  # the tool stopped reading (it failed); its exit code and stderr say why
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        returncode = proc.wait()
    finally:
        timer.cancel()
        reader.join(timeout=5)
        for fh in opened:
            fh.close()
        cleanup.done(token)
    elapsed = time.monotonic() - started
    if elapsed >= timeout_s:
        tail.append(f"(stopped after the {timeout_s:.0f} s timeout)")
        returncode = returncode or -1
    return ToolResult(returncode, tail, elapsed)


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill {name} placeholders of a profile command with shell-quoted values; other braces stay."""
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", shlex.quote(value))
    return out


# ---------------------------------------------------------------------------------------------
# Finding backups and telling their format from their content


class ArchiveFormat(enum.Enum):
    CUSTOM = "custom"            # pg_dump -Fc: PGDMP magic
    DIRECTORY = "directory"      # pg_dump -Fd: a directory holding toc.dat
    GZIP_SQL = "sql.gz"          # pg_dump | gzip
    GZIP_CUSTOM = "custom.gz"    # pg_dump -Fc | gzip
    PLAIN_SQL = "sql"            # pg_dump > file.sql
    UNKNOWN = "unknown"

    @property
    def is_archive(self) -> bool:
        """Read by pg_restore (as opposed to fed to psql)."""
        return self in (ArchiveFormat.CUSTOM, ArchiveFormat.DIRECTORY, ArchiveFormat.GZIP_CUSTOM)


def detect_format(path: Path) -> ArchiveFormat:
    if path.is_dir():
        return ArchiveFormat.DIRECTORY if (path / "toc.dat").is_file() else ArchiveFormat.UNKNOWN
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return ArchiveFormat.UNKNOWN
    if head.startswith(b"PGDMP"):
        return ArchiveFormat.CUSTOM
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as gz:
                inner = gz.read(512)
        except (OSError, EOFError):
            return ArchiveFormat.GZIP_SQL  # the gzip check will say what is wrong with it
        return ArchiveFormat.GZIP_CUSTOM if inner.startswith(b"PGDMP") else ArchiveFormat.GZIP_SQL
    text = head.lstrip()
    if text.startswith((b"--", b"SET ", b"CREATE ", b"\\connect", b"BEGIN", b"SELECT ")):
        return ArchiveFormat.PLAIN_SQL
    return ArchiveFormat.UNKNOWN


def timestamp_in_name(name: str) -> dt.datetime | None:
    """The newest plausible timestamp written in a backup's name (local time), else None."""
    best: dt.datetime | None = None
    for match in _STAMP.finditer(name):
        parts = {k: int(v) if v else 0 for k, v in match.groupdict().items()}
        try:
            stamp = dt.datetime(parts["y"], parts["m"], parts["d"], parts["H"], parts["M"], parts["S"])
        except ValueError:
            continue
        best = stamp if best is None or stamp > best else best
    return best.astimezone() if best is not None else None


@dataclass(frozen=True)
class BackupCandidate:
    path: Path
    format: ArchiveFormat
    taken_at: dt.datetime
    # "name" when the time comes from a timestamp in the file name, else "mtime".
    taken_from: str
    bytes: int

    def describe(self) -> str:
        stamp = self.taken_at.isoformat(timespec="seconds")
        return f"{self.path.name} ({self.format.value}, {human_bytes(self.bytes)}, taken {stamp} per {self.taken_from})"


def find_backups(directory: Path) -> tuple[list[BackupCandidate], list[str]]:
    """Backups in `directory`, newest first, and the names that were ignored (checksums, logs, ...).

    A file counts as a backup when its content is a PostgreSQL dump, or when its name says it is
    one (a timestamp or a dump extension) even if the content is unreadable: a broken newest
    backup must fail the drill, not be skipped in favour of an older one.
    """
    found: list[BackupCandidate] = []
    ignored: list[str] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        fmt = detect_format(path)
        if fmt is ArchiveFormat.UNKNOWN:
            named_like_backup = path.suffix.lower() in BACKUP_SUFFIXES or timestamp_in_name(path.name) is not None
            if path.suffix.lower() in IGNORED_SUFFIXES or path.suffix.lower() == ".rdb" or not named_like_backup:
                ignored.append(path.name)
                continue
            if path.is_dir():
                ignored.append(path.name)
                continue
        stamp = timestamp_in_name(path.name)
        taken_from = "name"
        if stamp is None:
            stamp = dt.datetime.fromtimestamp(path.stat().st_mtime).astimezone()
            taken_from = "mtime"
        found.append(BackupCandidate(path, fmt, stamp, taken_from, path_bytes(path)))
    found.sort(key=lambda c: (c.taken_at, c.path.name), reverse=True)
    return found, ignored


def dir_listing(directory: Path) -> list[tuple[str, int, float]]:
    """Names, sizes and mtimes under a backup directory: proof the drill did not touch it."""
    rows = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            rows.append((path.relative_to(directory).as_posix(), st.st_size, st.st_mtime))
    return rows


# ---------------------------------------------------------------------------------------------
# Backup


@dataclass(frozen=True)
class BackupArtifact:
    path: Path
    format: ArchiveFormat
    bytes: int
    taken_at: dt.datetime
    elapsed_s: float
    # "pg_dump", "backup.command" or "newest in <dir>"
    origin: str
    candidates: tuple[BackupCandidate, ...] = ()

    @property
    def age_s(self) -> float:
        return max(0.0, (dt.datetime.now().astimezone() - self.taken_at).total_seconds())

    def next_candidate(self) -> BackupCandidate | None:
        older = [c for c in self.candidates if c.path != self.path]
        return older[0] if older else None


def take_backup(
    client: PgClient,
    source_url: str,
    out_dir: Path,
    *,
    fmt: str = "custom",
    jobs: int = 2,
    command: str | None = None,
    timeout_s: float = 3600,
    snapshot: str | None = None,
) -> BackupArtifact:
    """pg_dump -Fc (or -Fd -j N), or the team's own `backup.command` with {dsn} and {output}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().astimezone()
    name = f"drill_{stamp:%Y%m%dT%H%M%S}"
    if command:
        output = out_dir / f"{name}.backup"
        line = expand(command, {"dsn": source_url, "output": str(output), **_tool_placeholders(client)})
        with progress("backup", lambda: f"{human_bytes(path_bytes(output))} written"):
            result = run_tool([line], env=client.env(source_url), timeout_s=timeout_s, shell=True)
        if result.returncode != 0:
            raise DrError(
                f"backup.command exited with {result.returncode} after {result.elapsed_s:.1f} s:\n{result.tail()}"
            )
        if not output.exists():
            raise DrError(f"backup.command exited 0 but wrote nothing at {{output}} ({output})")
        size = path_bytes(output)
        return BackupArtifact(output, detect_format(output), size, stamp, result.elapsed_s, "backup.command")
    directory = fmt == "directory"
    output = out_dir / (name if directory else f"{name}.dump")
    argv = [*client.argv("pg_dump"), "--dbname", client.dsn(source_url), "--no-password"]
    if snapshot:
        argv += ["--snapshot", snapshot]
    if directory:
        if client.in_container:
            raise DrError("backup.format = directory needs pg_dump on this host (the container's files are not ours)")
        argv += ["-Fd", "-j", str(max(1, jobs)), "-f", str(output)]
        stdout_path = None
    else:
        argv += ["-Fc"]
        stdout_path = output  # through stdout: works the same for a tool inside a container
    with progress("backup", lambda: f"{human_bytes(path_bytes(output))} written"):
        result = run_tool(argv, env=client.env(source_url), timeout_s=timeout_s, stdout_path=stdout_path)
    if result.returncode != 0:
        raise DrError(f"pg_dump exited with {result.returncode} after {result.elapsed_s:.1f} s:\n{result.tail()}")
    fmt_found = ArchiveFormat.DIRECTORY if directory else ArchiveFormat.CUSTOM
    return BackupArtifact(output, fmt_found, path_bytes(output), stamp, result.elapsed_s, "pg_dump")


def _tool_placeholders(client: PgClient) -> dict[str, str]:
    values = {}
    for tool in ("pg_dump", "pg_restore", "psql"):
        with contextlib.suppress(OpsError):
            argv = client.argv(tool)
            values[tool] = argv[0] if len(argv) == 1 else " ".join(argv)
    return values


def newest_backup(directory: Path) -> BackupArtifact:
    candidates, ignored = find_backups(directory)
    if not candidates:
        raise DrError(
            f"no backup found in {directory} (looked for pg_dump custom/directory archives and .sql[.gz] files; "
            f"ignored: {', '.join(ignored[:10]) or 'nothing'})"
        )
    newest = candidates[0]
    log.info("newest backup in %s: %s", directory, newest.describe())
    return BackupArtifact(
        newest.path, newest.format, newest.bytes, newest.taken_at, 0.0, f"newest in {directory}", tuple(candidates)
    )


# ---------------------------------------------------------------------------------------------
# Verify the archive


@dataclass(frozen=True)
class ArchiveReport:
    format: ArchiveFormat
    bytes: int
    toc_entries: int
    table_data_entries: int
    # Bytes of SQL the archive expands to (read through to the end: a truncated archive cannot).
    expanded_bytes: int
    elapsed_s: float

    def describe(self) -> str:
        toc = ""
        if self.toc_entries:
            toc = f", {self.toc_entries} TOC entries ({self.table_data_entries} with table data)"
        return f"{self.format.value}, {human_bytes(self.bytes)}{toc}, expands to {human_bytes(self.expanded_bytes)}"


class _CountingSink:
    def __init__(self) -> None:
        self.bytes = 0
        self.tail = b""

    def write(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        self.tail = (self.tail + chunk)[-4096:]


def _feed_file(path: Path, *, gunzip: bool, counter: _CountingSink | None = None) -> Callable[[Any], None]:
    def feed(stdin: Any) -> None:
        opener = gzip.open if gunzip else open
        with opener(path, "rb") as fh:  # type: ignore[operator]
            while chunk := fh.read(1 << 20):
                if counter is not None:
                    counter.write(chunk)
                stdin.write(chunk)

    return feed


def verify_archive(
    client: PgClient, artifact: BackupArtifact, *, min_bytes: int, timeout_s: float = 3600
) -> ArchiveReport:
    """The archive parses (`pg_restore --list`), reads through to its end, and is not suspiciously small."""
    started = time.monotonic()
    where = f"{artifact.path.name} ({artifact.origin})"
    if artifact.format is ArchiveFormat.UNKNOWN:
        raise DrError(f"{where}: not a PostgreSQL backup: {_first_bytes(artifact.path)} — expected a pg_dump custom "
                      f"(PGDMP) or directory archive, or SQL (optionally gzip-compressed)")
    if artifact.bytes < min_bytes:
        raise DrError(f"{where}: {artifact.bytes} bytes, below the floor of {min_bytes} bytes (backup.min_bytes) — "
                      f"an empty or failed dump")
    if artifact.format in (ArchiveFormat.GZIP_SQL, ArchiveFormat.PLAIN_SQL):
        return _verify_sql(artifact, started)
    gunzip = artifact.format is ArchiveFormat.GZIP_CUSTOM
    if gunzip:
        _gzip_integrity(artifact.path)
    env = client.env(client.server.url())
    listing = _pg_restore_read(client, artifact, ["--list"], env, timeout_s, gunzip)
    if listing.returncode != 0:
        raise DrError(f"{where}: pg_restore --list cannot parse it (exit {listing.returncode}):\n{listing.tail()}")
    toc = [line for line in listing.stdout_lines if line and not line.startswith(";")]
    data_entries = sum(1 for line in toc if " TABLE DATA " in line)
    sink = _CountingSink()
    if artifact.origin == "pg_dump" and not gunzip:
        # Our own pg_dump just exited 0 writing it, and the restore reads every block with
        # --exit-on-error: a second full read would only cost time. Archives from elsewhere are read through.
        return ArchiveReport(artifact.format, artifact.bytes, len(toc), data_entries, 0, time.monotonic() - started)
    with progress("verify", lambda: f"{human_bytes(sink.bytes)} of SQL read back"):
        full = _pg_restore_read(client, artifact, ["--file", "-"], env, timeout_s, gunzip, sink=sink)
    if full.returncode != 0:
        raise DrError(
            f"{where}: pg_restore cannot read it to the end (exit {full.returncode}) after {human_bytes(sink.bytes)} "
            f"of SQL — truncated or corrupt:\n{full.tail()}"
        )
    elapsed = time.monotonic() - started
    return ArchiveReport(artifact.format, artifact.bytes, len(toc), data_entries, sink.bytes, elapsed)


@dataclass
class _ReadResult:
    returncode: int
    stdout_lines: list[str]
    result: ToolResult

    def tail(self) -> str:
        return self.result.tail()


def _pg_restore_read(
    client: PgClient,
    artifact: BackupArtifact,
    args: list[str],
    env: Mapping[str, str],
    timeout_s: float,
    gunzip: bool,
    sink: _CountingSink | None = None,
) -> _ReadResult:
    argv = [*client.argv("pg_restore"), *args]
    with tempfile.TemporaryDirectory(prefix="opsverify-dr-") as tmp:
        out = Path(tmp) / "out"
        if artifact.format is ArchiveFormat.DIRECTORY:
            if client.in_container:
                raise DrError("directory-format archives need pg_restore on this host")
            argv.append(str(artifact.path))
            feed = None
        else:
            feed = _feed_file(artifact.path, gunzip=gunzip)
        if sink is None:
            result = run_tool(argv, env=env, timeout_s=timeout_s, stdin_feed=feed, stdout_path=out)
            lines = out.read_text(encoding="utf-8", errors="replace").splitlines()
            return _ReadResult(result.returncode, lines, result)
        result = _run_to_sink(argv, env, timeout_s, feed, sink)
        return _ReadResult(result.returncode, [], result)


def _run_to_sink(
    argv: list[str], env: Mapping[str, str], timeout_s: float, feed: Callable[[Any], None] | None, sink: _CountingSink
) -> ToolResult:
    """Like run_tool, but stdout is counted, not stored (a 1 GB archive expands to several GB of SQL)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, env=dict(env), stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    token = cleanup.register("pg_restore read-through", lambda: cleanup.stop_process(proc))
    tail: list[str] = []

    def drain_stdout() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            sink.write(chunk)

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            tail.append(raw.decode("utf-8", "replace").rstrip())
            del tail[:-50]

    threads = [threading.Thread(target=drain_stdout, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
    for t in threads:
        t.start()
    timer = threading.Timer(timeout_s, lambda: cleanup.stop_process(proc))
    timer.start()
    try:
        if feed is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                feed(proc.stdin)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        returncode = proc.wait()
    finally:
        timer.cancel()
        for t in threads:
            t.join(timeout=10)
        cleanup.done(token)
    return ToolResult(returncode, tail, time.monotonic() - started)


def _first_bytes(path: Path) -> str:
    if path.is_dir():
        return "a directory without toc.dat"
    with path.open("rb") as fh:
        head = fh.read(16)
    return f"first bytes {head!r}" if head else "an empty file"


def _gzip_integrity(path: Path) -> int:
    """Decompress to the end: gzip checks its CRC and length there, so truncation shows up."""
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DrError(
            f"{path.name}: gzip integrity check failed after {human_bytes(total)} decompressed: {exc} — "
            f"the file is truncated or corrupt (gzip -t {path.name} says the same)"
        ) from None
    return total


def _verify_sql(artifact: BackupArtifact, started: float) -> ArchiveReport:
    if artifact.format is ArchiveFormat.GZIP_SQL:
        expanded = _gzip_integrity(artifact.path)
        with gzip.open(artifact.path, "rb") as fh:
            tail = _tail_of(fh, expanded)
    else:
        expanded = artifact.bytes
        with artifact.path.open("rb") as fh:
            tail = _tail_of(fh, expanded)
    if not any(marker in tail for marker in PLAIN_SQL_DONE):
        raise DrError(
            f"{artifact.path.name}: the SQL ends without pg_dump's '-- PostgreSQL database dump complete' line — "
            f"the dump was cut off (pg_dump failed while its output was piped to gzip?); last line: "
            f"{tail.decode('utf-8', 'replace').strip().splitlines()[-1:] or ['(empty)']}"
        )
    return ArchiveReport(artifact.format, artifact.bytes, 0, 0, expanded, time.monotonic() - started)


def _tail_of(fh: Any, size: int, n: int = 4096) -> bytes:
    fh.seek(max(0, size - n))
    return bytes(fh.read(n))


# ---------------------------------------------------------------------------------------------
# Restore


@dataclass(frozen=True)
class RestoreResult:
    database_url: str
    elapsed_s: float
    tables_loaded: int
    how: str


def restore_backup(
    client: PgClient,
    artifact: BackupArtifact,
    target_url: str,
    *,
    jobs: int = 2,
    command: str | None = None,
    timeout_s: float = 3600,
) -> RestoreResult:
    """Into an empty throwaway database: pg_restore --exit-on-error (-j N from a file), psql with
    ON_ERROR_STOP for SQL, or the team's `backup.restore_command` ({input} {dsn})."""
    env = client.env(target_url)
    loaded = [0]
    if command:
        line = expand(command, {"input": str(artifact.path), "dsn": target_url, **_tool_placeholders(client)})
        with progress("restore", lambda: "backup.restore_command running"):
            result = run_tool([line], env=env, timeout_s=timeout_s, shell=True)
        if result.returncode != 0:
            raise DrError(f"backup.restore_command exited with {result.returncode} after {result.elapsed_s:.1f} s:\n"
                          f"{result.tail()}")
        return RestoreResult(target_url, result.elapsed_s, 0, "backup.restore_command")

    def on_line(line: str) -> None:
        if "processing data for table" in line or ("processing item" in line and "TABLE DATA" in line):
            loaded[0] += 1

    if artifact.format.is_archive:
        argv = [*client.argv("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", "--verbose",
                "--dbname", client.dsn(target_url), "--no-password"]
        feed = None
        how = "pg_restore"
        if artifact.format is ArchiveFormat.GZIP_CUSTOM:
            feed = _feed_file(artifact.path, gunzip=True)
            how += " (from gunzip, one job)"
        elif client.in_container and artifact.format is ArchiveFormat.CUSTOM:
            # Parallel restore needs a seekable file; the container only sees our stdin.
            feed = _feed_file(artifact.path, gunzip=False)
            how += " (through stdin into the container, one job)"
        else:
            argv += ["-j", str(max(1, jobs)), str(artifact.path)]
            how += f" -j {max(1, jobs)}"
        with progress("restore", lambda: f"{loaded[0]} tables loaded"):
            result = run_tool(argv, env=env, timeout_s=timeout_s, stdin_feed=feed, on_stderr_line=on_line)
        if result.returncode != 0:
            errors = [ln for ln in result.stderr_tail if "error" in ln.lower() or "ERROR" in ln] or result.stderr_tail
            raise DrError(f"pg_restore exited with {result.returncode} after {result.elapsed_s:.1f} s "
                          f"({loaded[0]} tables loaded):\n" + redact("\n".join(errors[-STDERR_TAIL_LINES:])))
        return RestoreResult(target_url, result.elapsed_s, loaded[0], how)
    # SQL: psql exits 0 after errors unless ON_ERROR_STOP is set; never trust a plain psql restore.
    argv = [*client.argv("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            "--dbname", client.dsn(target_url), "--no-password"]
    counter = _CountingSink()
    feed = _feed_file(artifact.path, gunzip=artifact.format is ArchiveFormat.GZIP_SQL, counter=counter)
    with progress("restore", lambda: f"{human_bytes(counter.bytes)} of SQL fed to psql"):
        result = run_tool(argv, env=env, timeout_s=timeout_s, stdin_feed=feed)
    if result.returncode != 0:
        raise DrError(f"psql -v ON_ERROR_STOP=1 stopped with exit {result.returncode} after {result.elapsed_s:.1f} s "
                      f"({human_bytes(counter.bytes)} of SQL fed; the whole restore was rolled back):\n{result.tail()}")
    return RestoreResult(target_url, result.elapsed_s, 0, "psql -v ON_ERROR_STOP=1 --single-transaction")


# ---------------------------------------------------------------------------------------------
# Manifest: what a database holds, computed in the server


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    # Sum of 64-bit hashes of each row's text: independent of row order and of physical layout.
    content_hash: int


@dataclass(frozen=True)
class Manifest:
    tables: dict[str, TableFingerprint]
    sequences: dict[str, int | None]
    constraints: dict[str, str]
    indexes: dict[str, str]
    # Columns, views, functions, triggers, extensions — one normalized line each.
    schema: tuple[str, ...]
    elapsed_s: float = 0.0
    heap_bytes: int = 0

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def describe(self) -> str:
        return (f"{len(self.tables)} tables, {self.total_rows} rows, {len(self.sequences)} sequences, "
                f"{len(self.constraints)} constraints, {len(self.indexes)} indexes")

    def digest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self.tables):
            h.update(f"{key}:{self.tables[key].rows}:{self.tables[key].content_hash}\n".encode())
        for part in (self.sequences, self.constraints, self.indexes):
            for key in sorted(part):
                h.update(f"{key}={part[key]}\n".encode())
        for line in self.schema:
            h.update(line.encode() + b"\n")
        return h.hexdigest()[:16]


_EXCLUDE_NS = """n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
    AND n.nspname NOT LIKE 'pg\\_temp%%'"""
_NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"

# Column types whose hash functions depend only on the value (not on OIDs, like enums): rows made of
# these are hashed with hash_record_extended (no text conversion, ~2x faster); others via row text.
_VALUE_HASHED_TYPES = [
    "int2", "int4", "int8", "text", "varchar", "bpchar", "bool", "numeric", "float4", "float8",
    "timestamptz", "timestamp", "date", "time", "timetz", "interval", "uuid", "jsonb", "bytea", "inet",
    "cidr", "macaddr", "char", "name",
]
_FAST_HASH = (
    "NOT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
    "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "AND coalesce(e.oid, t.oid) NOT IN (" + ", ".join(f"'{t}'::regtype" for t in _VALUE_HASHED_TYPES) + "))"
)

_TABLES_SQL = f"""
SELECT n.nspname, c.relname, c.relpages, pg_relation_size(c.oid), {_FAST_HASH}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND {_EXCLUDE_NS} AND {_NOT_EXTENSION.format(oid="c.oid")}
ORDER BY pg_relation_size(c.oid) DESC"""

_SEQUENCES_SQL = "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1"

_CONSTRAINTS_SQL = f"""
SELECT n.nspname || '.' || coalesce(cl.relname, t.typname, '-') || '.' || c.conname,
       pg_get_constraintdef(c.oid) || CASE WHEN c.convalidated THEN '' ELSE ' NOT VALID' END
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
LEFT JOIN pg_class cl ON cl.oid = c.conrelid LEFT JOIN pg_type t ON t.oid = c.contypid
WHERE {_EXCLUDE_NS} ORDER BY 1"""

_INDEXES_SQL = f"""
SELECT n.nspname || '.' || ic.relname,
       pg_get_indexdef(i.indexrelid)
       || CASE WHEN i.indisvalid THEN '' ELSE ' [INVALID]' END
       || CASE WHEN i.indisready THEN '' ELSE ' [NOT READY]' END
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE {_EXCLUDE_NS} ORDER BY 1"""

_SCHEMA_SQL = f"""
SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || CASE a.attidentity WHEN 'a' THEN ' IDENTITY ALWAYS' WHEN 'd' THEN ' IDENTITY BY DEFAULT' ELSE '' END
       || CASE WHEN a.attgenerated = 's' THEN ' GENERATED' ELSE '' END
       || ' #' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {_EXCLUDE_NS}
  AND {_NOT_EXTENSION.format(oid="c.oid")}
UNION ALL
SELECT 'view ' || n.nspname || '.' || c.relname || ' md5:' || md5(pg_get_viewdef(c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND {_EXCLUDE_NS} AND {_NOT_EXTENSION.format(oid="c.oid")}
UNION ALL
SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') md5:'
       || md5(pg_get_functiondef(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'p') AND {_EXCLUDE_NS} AND {_NOT_EXTENSION.format(oid="p.oid")}
UNION ALL
SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || t.tgname || ' ' || pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND {_EXCLUDE_NS}
UNION ALL
SELECT 'extension ' || e.extname FROM pg_extension e WHERE e.extname NOT IN ('plpgsql', 'amcheck')
ORDER BY 1"""


def _connect(url: str, snapshot: str | None = None) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    # Same rendering of every value on both sides; read-only so the source is never written.
    conn.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; "
                 "SET statement_timeout = 0; SET lock_timeout = '10s'")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    return conn


def _fingerprint_part(url: str, snapshot: str | None, table: str, block_range: tuple[int, int | None] | None,
                      pool: _ConnPool, fast: bool) -> tuple[str, int, int]:
    conn = pool.get(url, snapshot)
    try:
        schema, name = table.split(".", 1)
        # The alias is unlikely to collide with a column name; a collision would compare a column instead.
        row_hash = "hash_record_extended(opsv_row_, 0)" if fast else "hashtextextended(opsv_row_::text, 0)"
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(" + row_hash + "), 0) FROM ONLY {}.{} AS opsv_row_"
        ).format(sql.Identifier(schema), sql.Identifier(name))
        if block_range is not None:
            lo, hi = block_range
            query += sql.SQL(" WHERE ctid >= {}::tid").format(sql.Literal(f"({lo},0)"))
            if hi is not None:
                query += sql.SQL(" AND ctid < {}::tid").format(sql.Literal(f"({hi},0)"))
        row = conn.execute(query).fetchone()
        assert row is not None
        return table, int(row[0]), int(row[1])
    finally:
        pool.put(conn)


class _ConnPool:
    """Connections in one snapshot, shared by the fingerprint workers."""

    def __init__(self) -> None:
        self._free: list[psycopg.Connection] = []
        self._all: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def get(self, url: str, snapshot: str | None) -> psycopg.Connection:
        with self._lock:
            if self._free:
                return self._free.pop()
        conn = _connect(url, snapshot)
        with self._lock:
            self._all.append(conn)
        return conn

    def put(self, conn: psycopg.Connection) -> None:
        with self._lock:
            self._free.append(conn)

    def close(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()


def take_manifest(url: str, *, jobs: int = 2, snapshot: str | None = None, label: str = "manifest") -> Manifest:
    """Row counts and content hashes of every table (in the server, several connections), sequences,
    constraints, indexes and the normalized schema — all read in one snapshot when one is given."""
    started = time.monotonic()
    pool = _ConnPool()
    try:
        lead = pool.get(url, snapshot)
        if snapshot is None:
            # Our own snapshot, shared by the workers: a consistent picture even of a live database.
            snapshot = str(lead.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        tables = lead.execute(_TABLES_SQL).fetchall()
        tid_ranges = int(str(lead.execute("SHOW server_version_num").fetchone()[0])) >= 140000  # type: ignore[index]
        sequences = {str(k): (int(v) if v is not None else None) for k, v in lead.execute(_SEQUENCES_SQL).fetchall()}
        constraints = {str(k): str(v) for k, v in lead.execute(_CONSTRAINTS_SQL).fetchall()}
        indexes = {str(k): str(v) for k, v in lead.execute(_INDEXES_SQL).fetchall()}
        schema = tuple(str(r[0]) for r in lead.execute(_SCHEMA_SQL).fetchall())
        heap_bytes = sum(int(t[3]) for t in tables)
        parts: list[tuple[str, tuple[int, int | None] | None]] = []
        workers = max(1, jobs)
        fast = {f"{t[0]}.{t[1]}": bool(t[4]) and tid_ranges for t in tables}  # hash_record_extended: PG 14+
        for nsp, rel, relpages, size, _ in tables:
            key = f"{nsp}.{rel}"
            pages = max(int(relpages or 0), int(size) // 8192)
            if tid_ranges and workers > 1 and pages > SPLIT_TABLE_PAGES:
                step = pages // (workers * 2) + 1
                bounds = list(range(0, pages, step))
                for i, lo in enumerate(bounds):
                    parts.append((key, (lo, bounds[i + 1] if i + 1 < len(bounds) else None)))
            else:
                parts.append((key, None))
        pool.put(lead)
        done = [0]
        fingerprints: dict[str, list[int]] = {f"{t[0]}.{t[1]}": [0, 0] for t in tables}
        heap = human_bytes(heap_bytes)
        with progress(label, lambda: f"{done[0]}/{len(parts)} table parts hashed ({heap} of heap)"), \
                concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint") as ex:
            futures = [ex.submit(_fingerprint_part, url, snapshot, key, rng, pool, fast[key]) for key, rng in parts]
            for fut in concurrent.futures.as_completed(futures):
                key, rows, hashed = fut.result()
                fingerprints[key][0] += rows
                fingerprints[key][1] += hashed
                done[0] += 1
    finally:
        pool.close()
    return Manifest(
        tables={k: TableFingerprint(v[0], v[1]) for k, v in sorted(fingerprints.items())},
        sequences=sequences,
        constraints=constraints,
        indexes=indexes,
        schema=schema,
        elapsed_s=time.monotonic() - started,
        heap_bytes=heap_bytes,
    )


@contextlib.contextmanager
def exported_snapshot(url: str) -> Iterator[str]:
    """A snapshot held open for pg_dump --snapshot and the manifest: both see the same data."""
    conn = _connect(url)
    try:
        yield str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
    finally:
        conn.close()


def diff_manifests(expected: Manifest, got: Manifest, *, expected_name: str = "source",
                   got_name: str = "restored", limit: int = 25) -> list[str]:
    """Readable differences, most important first: missing tables, row counts, content, then schema."""
    lines: list[str] = []
    missing = sorted(set(expected.tables) - set(got.tables))
    extra = sorted(set(got.tables) - set(expected.tables))
    if missing:
        lines.append(f"tables missing in {got_name}: {', '.join(missing)}")
    if extra:
        lines.append(f"tables only in {got_name}: {', '.join(extra)}")
    for key in sorted(set(expected.tables) & set(got.tables)):
        a, b = expected.tables[key], got.tables[key]
        if a.rows != b.rows:
            lines.append(f"table {key}: {expected_name} {a.rows} rows, {got_name} {b.rows} rows ({b.rows - a.rows:+d})")
        elif a.content_hash != b.content_hash:
            lines.append(f"table {key}: same {a.rows} rows but different content (hash {a.content_hash} vs "
                         f"{b.content_hash}) — values changed in the round trip")
    for title, left, right in (("sequence", expected.sequences, got.sequences),
                               ("constraint", expected.constraints, got.constraints),
                               ("index", expected.indexes, got.indexes)):
        for key in sorted(set(left) | set(right)):
            if key not in right:
                hint = " (pg_dump skips invalid indexes)" if "[INVALID]" in str(left[key]) else ""
                lines.append(f"{title} {key} missing in {got_name}: {left[key]}{hint}")
            elif key not in left:
                lines.append(f"{title} {key} only in {got_name}: {right[key]}")
            elif left[key] != right[key]:
                lines.append(f"{title} {key}: {expected_name} {left[key]!s} vs {got_name} {right[key]!s}")
    schema_a, schema_b = set(expected.schema), set(got.schema)
    for line in sorted(schema_a - schema_b):
        lines.append(f"schema: {expected_name} has '{line}', {got_name} does not")
    for line in sorted(schema_b - schema_a):
        lines.append(f"schema: {got_name} has '{line}', {expected_name} does not")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more differences"]
    return lines


def invalid_indexes(manifest: Manifest) -> list[str]:
    return [f"{k}: {v}" for k, v in manifest.indexes.items() if "[INVALID]" in v or "[NOT READY]" in v]


# ---------------------------------------------------------------------------------------------
# Newest-backup integrity: revision, invariants, freshness


def restored_revisions(url: str) -> list[str] | None:
    """alembic_version rows of the restored database; None when it has no such table."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        return [str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version").fetchall()]


def known_revisions(alembic_ini: Path) -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(str(alembic_ini)))
    return {rev.revision for rev in script.walk_revisions()}


def list_tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class InvariantResult:
    query: str
    ok: bool
    detail: str


def check_invariants(url: str, queries: Sequence[str], timeout_s: float = 60) -> list[InvariantResult]:
    """Each query must return one row whose first value is true (e.g. `SELECT count(*) > 0 FROM items`)."""
    results = []
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"SET statement_timeout = '{int(timeout_s * 1000)}'")
        for query in queries:
            try:
                row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            except psycopg.Error as exc:
                results.append(InvariantResult(query, False, f"error: {str(exc).splitlines()[0]}"))
                continue
            ok = bool(row and row[0] is True)
            results.append(InvariantResult(query, ok, f"returned {row[0] if row else 'no row'!r}"))
    return results


def newest_data_at(url: str, query: str) -> dt.datetime | None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    value = row[0] if row else None
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise DrError(f"backup.freshness_query must return one timestamptz, got {type(value).__name__} {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------
# pg_amcheck


@dataclass(frozen=True)
class AmcheckResult:
    ok: bool
    elapsed_s: float
    output: str


def run_amcheck(client: PgClient, url: str, *, jobs: int = 2, timeout_s: float = 3600) -> AmcheckResult:
    """Heap and B-tree checks of every relation (installs the amcheck extension in the throwaway copy)."""
    argv = [*client.argv("pg_amcheck"), "--install-missing", "--jobs", str(max(1, jobs)), "--no-password",
            "--progress", client.dsn(url)]
    with progress("amcheck", lambda: "checking heap and btree pages"):
        result = run_tool(argv, env=client.env(url), timeout_s=timeout_s)
    noise = ("relations (", "pages (")
    findings = [ln for ln in result.stderr_tail if ln.strip() and not any(n in ln for n in noise)]
    return AmcheckResult(result.returncode == 0, result.elapsed_s, redact("\n".join(findings[-STDERR_TAIL_LINES:])))


# ---------------------------------------------------------------------------------------------
# Redis: BGSAVE, copy the RDB, load it in a fresh server, compare


@dataclass(frozen=True)
class RedisKey:
    type: str
    # Milliseconds left, -1 without expiry.
    ttl_ms: int
    value: Any


MARKER_TTL_S = 3600


def seed_redis_markers(client: Any, prefix: str) -> dict[str, str]:
    """One key of every common type (some with TTLs) under `prefix`: what the snapshot must carry."""
    token = os.urandom(4).hex()
    pipe = client.pipeline()
    pipe.set(f"{prefix}string", f"value-{token}")
    pipe.set(f"{prefix}string:ttl", "expiring", ex=MARKER_TTL_S)
    pipe.hset(f"{prefix}hash", mapping={"a": "1", "b": token})
    pipe.rpush(f"{prefix}list", "x", "y", token)
    pipe.sadd(f"{prefix}set", "p", "q", token)
    pipe.zadd(f"{prefix}zset", {"low": 1.5, "high": 99, token: 7})
    pipe.expire(f"{prefix}zset", MARKER_TTL_S)
    pipe.xadd(f"{prefix}stream", {"event": "drill", "token": token})
    for i in range(50):
        pipe.set(f"{prefix}bulk:{i:03d}", f"{i}-{token}")
    pipe.execute()
    return {"token": token}


def read_keyspace(client: Any, prefix: str, limit: int = 20000) -> dict[str, RedisKey]:
    keys: dict[str, RedisKey] = {}
    for raw in client.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        ttl = int(client.pttl(key))
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = sorted(client.hgetall(key).items())
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = client.dump(key)
        keys[key] = RedisKey(kind, ttl, value)
        if len(keys) >= limit:
            break
    return keys


def compare_keyspaces(live: Mapping[str, RedisKey], restored: Mapping[str, RedisKey], *,
                      elapsed_ms: int, limit: int = 20) -> list[str]:
    """Differences in keys, types, TTLs (a restored TTL may only have run down) and values."""
    lines: list[str] = []
    missing = sorted(k for k in live if k not in restored and not (0 <= live[k].ttl_ms <= elapsed_ms))
    if missing:
        shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
        lines.append(f"{len(missing)} of {len(live)} keys missing in the restored RDB: {shown}")
    for key in sorted(set(live) & set(restored)):
        a, b = live[key], restored[key]
        if a.type != b.type:
            lines.append(f"{key}: type {a.type} live, {b.type} restored")
        elif (a.ttl_ms == -1) != (b.ttl_ms == -1) or (a.ttl_ms >= 0 and b.ttl_ms > a.ttl_ms + 1000):
            lines.append(f"{key}: TTL {a.ttl_ms} ms live, {b.ttl_ms} ms restored")
        elif a.value != b.value:
            lines.append(f"{key}: value differs ({str(a.value)[:60]} live, {str(b.value)[:60]} restored)")
    return lines[:limit]


def wait_bgsave(client: Any, since: int, timeout_s: float = 120) -> None:
    """BGSAVE and wait until a save newer than `since` (LASTSAVE) has completed."""
    import redis

    with contextlib.suppress(redis.ResponseError):  # "Background save already in progress"
        client.bgsave()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("rdb_bgsave_in_progress") and int(info.get("rdb_last_save_time", 0)) > since:
            if info.get("rdb_last_bgsave_status") != "ok":
                raise DrError(f"Redis BGSAVE failed (rdb_last_bgsave_status={info.get('rdb_last_bgsave_status')})")
            return
        if not info.get("rdb_bgsave_in_progress") and int(info.get("rdb_last_save_time", 0)) <= since:
            with contextlib.suppress(redis.ResponseError):
                client.bgsave()
        time.sleep(0.2)
    raise DrError(f"Redis BGSAVE did not complete within {timeout_s:.0f} s")


def copy_rdb(host: str, port: int, password: str, dest: Path, timeout_s: float = 300) -> None:
    """The server's RDB as a replica would receive it (`redis-cli --rdb`): works for local, container and
    remote servers alike, without reaching into their file systems."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise DrError("redis-cli not found: install redis-tools to copy the RDB")
    env = dict(os.environ)
    if password:
        env["REDISCLI_AUTH"] = password
    result = run_tool([cli, "-h", host, "-p", str(port), "--rdb", str(dest)], env=env, timeout_s=timeout_s)
    if result.returncode != 0 or not dest.is_file():
        raise DrError(f"redis-cli --rdb failed (exit {result.returncode}):\n{result.tail()}")


def _local_rdb_path(client: Any, host: str) -> Path | None:
    """The RDB BGSAVE just wrote, when that file is on this machine (a local server); else None."""
    import redis

    if host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        directory = client.config_get("dir").get("dir")
        name = client.config_get("dbfilename").get("dbfilename")
    except redis.RedisError:  # CONFIG disabled (managed Redis)
        return None
    if not directory or not name:
        return None
    path = Path(directory) / name
    try:
        fresh = path.stat().st_mtime >= int(client.lastsave().timestamp()) - 1
    except OSError:  # a container's /data, not ours
        return None
    return path if fresh else None


@contextlib.contextmanager
def fresh_redis(rdb: Path, timeout_s: float = 60) -> Iterator[Any]:
    """A throwaway redis-server on a free loopback port that loads `rdb`; removed afterwards."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise DrError("redis-server not found on this machine: install redis-server to load the RDB")
    with tempfile.TemporaryDirectory(prefix="opsverify-dr-redis-") as tmp:
        shutil.copyfile(rdb, Path(tmp) / "dump.rdb")
        port = free_port()
        logfile = Path(tmp) / "redis.log"
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--dbfilename", "dump.rdb",
             "--save", "", "--appendonly", "no", "--logfile", str(logfile), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        token = cleanup.register(f"drill redis :{port}", lambda: cleanup.stop_process(proc))
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    tail = logfile.read_text(errors="replace").strip().splitlines()[-3:] if logfile.exists() else []
                    raise DrError(f"redis-server could not load the RDB (exit {proc.returncode}): {' | '.join(tail)}")
                with contextlib.suppress(redis.RedisError):
                    if client.ping() and not int(client.info("persistence").get("loading", 0)):
                        break
                if time.monotonic() > deadline:
                    raise DrError(f"redis-server did not load the RDB within {timeout_s:.0f} s")
                time.sleep(0.1)
            yield client
        finally:
            client.close()
            cleanup.stop_process(proc)
            cleanup.done(token)


@dataclass(frozen=True)
class RedisDrill:
    live_keys: int
    restored_keys: int
    rdb_bytes: int
    how: str
    elapsed_s: float
    problems: list[str]


def redis_drill(
    host: str, port: int, password: str, prefix: str, workdir: Path, *, command: str | None = None,
    timeout_s: float = 300,
) -> RedisDrill:
    """Marker keys under `prefix`, BGSAVE, copy the RDB, load it in a fresh redis-server, compare.

    With `command` (the team's own Redis backup, {output} {host} {port}), the gate does not BGSAVE
    itself: a script that copies dump.rdb without saving first loses every key written since.
    """
    import redis

    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    rdb = workdir / "drill.rdb"
    client = redis.Redis(host=host, port=port, password=password or None, socket_timeout=10, socket_connect_timeout=5)
    try:
        seed_redis_markers(client, prefix)
        live = read_keyspace(client, prefix)
        read_at = time.monotonic()
        if command:
            line = expand(command, {"output": str(rdb), "host": host, "port": str(port)})
            env = dict(os.environ)
            if password:
                env["REDISCLI_AUTH"] = password
            result = run_tool([line], env=env, timeout_s=timeout_s, shell=True)
            if result.returncode != 0 or not rdb.is_file():
                raise DrError(f"Redis backup command exited with {result.returncode}"
                              f"{'' if rdb.is_file() else f' and wrote no RDB at {rdb}'}:\n{result.tail()}")
            how = "backup.redis_command"
        else:
            since = int(client.lastsave().timestamp())
            time.sleep(1.05)  # LASTSAVE has one-second resolution: the save we wait for must be newer
            wait_bgsave(client, since, timeout_s)
            on_disk = _local_rdb_path(client, host)
            if on_disk is not None:
                shutil.copyfile(on_disk, rdb)
                how = f"BGSAVE + copy of {on_disk}"
            else:
                copy_rdb(host, port, password, rdb, timeout_s)
                how = "BGSAVE + redis-cli --rdb"
        with fresh_redis(rdb) as restored_client:
            restored = read_keyspace(restored_client, prefix)
        elapsed_ms = int((time.monotonic() - read_at) * 1000)
        problems = compare_keyspaces(live, restored, elapsed_ms=elapsed_ms)
        return RedisDrill(len(live), len(restored), rdb.stat().st_size, how, time.monotonic() - started, problems)
    finally:
        with contextlib.suppress(Exception):
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
        client.close()
        with contextlib.suppress(OSError):
            rdb.unlink()


# ---------------------------------------------------------------------------------------------
# The drill


T = TypeVar("T")


@dataclass
class DrillPlan:
    """What one drill does; built by the fixtures from the profile and the command line."""

    mode: str  # "fresh" | "newest"
    workdir: Path
    jobs: int = 2
    format: str = "custom"
    min_bytes: int = 1024
    backup_command: str | None = None
    restore_command: str | None = None
    backup_dir: Path | None = None
    timeout_s: float = 3600
    alembic_ini: Path | None = None
    invariants: list[str] = field(default_factory=list)
    freshness_query: str | None = None


@dataclass
class SmokeOutcome:
    base_url: str
    # Endpoint path -> failure reason; empty when every endpoint kept its promise.
    failures: dict[str, str]
    started_to_green_s: float
    exchanges: list[str]


class DrillRun:
    """One drill. Steps run once; a failed step's error is re-raised (as its own) to every later step."""

    def __init__(
        self,
        plan: DrillPlan,
        client: PgClient,
        *,
        source_url: Callable[[], str] | None,
        new_database: Callable[[], str],
        run_smoke: Callable[[str], SmokeOutcome] | None,
    ) -> None:
        self.plan = plan
        self.client = client
        self._source_url = source_url
        self._new_database = new_database
        self._run_smoke = run_smoke
        self._results: dict[str, Any] = {}
        self._errors: dict[str, StepError] = {}
        self._lock = threading.RLock()
        self.source_listing: list[tuple[str, int, float]] | None = None

    def _step(self, name: str, fn: Callable[[], T]) -> T:
        with self._lock:
            if name in self._results:
                return self._results[name]  # type: ignore[no-any-return]
            if name in self._errors:
                raise self._errors[name]
            try:
                value = fn()
            except StepError as exc:
                self._errors[name] = exc
                raise
            except (OpsError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
                error = StepError(name, str(exc) or type(exc).__name__)
                self._errors[name] = error
                raise error from None
            self._results[name] = value
            return value

    def failed(self, name: str) -> StepError | None:
        return self._errors.get(name)

    # -- source ---------------------------------------------------------------------------------
    def source(self) -> str:
        assert self._source_url is not None
        return self._step("source", self._source_url)

    def source_manifest(self) -> Manifest:
        """Fresh mode: the source as it was when the backup was taken (same snapshot as pg_dump)."""
        self.backup()
        return self._results["source_manifest"]  # type: ignore[no-any-return]

    # -- steps ----------------------------------------------------------------------------------
    def backup(self) -> BackupArtifact:
        def run() -> BackupArtifact:
            if self.plan.mode == "newest":
                assert self.plan.backup_dir is not None
                self.source_listing = dir_listing(self.plan.backup_dir)
                return newest_backup(self.plan.backup_dir)
            try:
                url = self.source()
            except StepError as exc:
                raise StepError("backup", f"could not prepare the source database: {exc.message}") from None
            if self.plan.backup_command:
                self._results["source_manifest"] = take_manifest(url, jobs=self.plan.jobs, label="source manifest")
                return take_backup(self.client, url, self.plan.workdir, command=self.plan.backup_command,
                                   timeout_s=self.plan.timeout_s)
            # The manifest is hashed while pg_dump runs, both in one exported snapshot: the same data,
            # and the fingerprint's cost mostly hides behind pg_dump's compression.
            with exported_snapshot(url) as snapshot, \
                    concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="source-manifest") as ex:
                manifest = ex.submit(
                    take_manifest, url, jobs=self.plan.jobs, snapshot=snapshot, label="source manifest"
                )
                artifact = take_backup(self.client, url, self.plan.workdir, fmt=self.plan.format, jobs=self.plan.jobs,
                                       timeout_s=self.plan.timeout_s, snapshot=snapshot)
                self._results["source_manifest"] = manifest.result()
                return artifact

        return self._step("backup", run)

    def archive(self) -> ArchiveReport:
        def run() -> ArchiveReport:
            artifact = self._need("backup", self.backup)
            try:
                return verify_archive(
                    self.client, artifact, min_bytes=self.plan.min_bytes, timeout_s=self.plan.timeout_s
                )
            except DrError as exc:
                nxt = artifact.next_candidate()
                hint = (f"\nnext candidate (NOT used — a broken newest backup is a failure): {nxt.describe()}"
                        if nxt else "")
                raise StepError("archive", f"{exc}{hint}") from None

        return self._step("archive", run)

    def restore(self) -> RestoreResult:
        def run() -> RestoreResult:
            artifact = self._need("backup", self.backup)
            self._need("archive", self.archive)
            url = self._new_database()
            return restore_backup(self.client, artifact, url, jobs=self.plan.jobs, command=self.plan.restore_command,
                                  timeout_s=self.plan.timeout_s)

        return self._step("restore", run)

    def restored_manifest(self) -> Manifest:
        def run() -> Manifest:
            restored = self._need("restore", self.restore)
            return take_manifest(restored.database_url, jobs=self.plan.jobs, label="restored manifest")

        return self._step("restored_manifest", run)

    def integrity_problems(self) -> list[str]:
        """Everything the integrity checks found; the drill runs only on a restore that passed them."""

        def run() -> list[str]:
            restored = self._need("restore", self.restore)
            problems: list[str] = []
            if self.plan.mode == "fresh":
                manifest = self._need("restored_manifest", self.restored_manifest)
                problems += diff_manifests(self.source_manifest(), manifest)
                problems += [f"invalid index in restored copy: {i}" for i in invalid_indexes(manifest)]
                return problems
            revision = self.revision_problem(restored.database_url)
            if revision:
                problems.append(revision)
            problems += [f"invariant {r.query!r} {r.detail}" for r in self.invariants() if not r.ok]
            return problems

        return self._step("integrity", run)

    def revision_problem(self, url: str) -> str | None:
        if self.plan.alembic_ini is None:
            return None
        revisions = restored_revisions(url)
        if revisions is None:
            tables = list_tables(url)
            return (f"the restored database has no alembic_version table — a backup of another database? "
                    f"tables found: {', '.join(tables[:12]) or 'none'}")
        known = known_revisions(self.plan.alembic_ini)
        unknown = [r for r in revisions if r not in known]
        if not revisions or unknown:
            return (f"restored alembic_version {revisions or '(empty)'} is not a revision of "
                    f"{self.plan.alembic_ini} ({len(known)} known) — a backup of another database or branch?")
        return None

    def invariants(self) -> list[InvariantResult]:
        def run() -> list[InvariantResult]:
            restored = self._need("restore", self.restore)
            return check_invariants(restored.database_url, self.plan.invariants)

        return self._step("invariants", run)

    def amcheck(self) -> AmcheckResult:
        def run() -> AmcheckResult:
            restored = self._need("restore", self.restore)
            return run_amcheck(self.client, restored.database_url, jobs=self.plan.jobs, timeout_s=self.plan.timeout_s)

        return self._step("amcheck", run)

    def drill(self) -> SmokeOutcome:
        def run() -> SmokeOutcome:
            restored = self._need("restore", self.restore)
            problems = self._need("integrity", self.integrity_problems)
            if problems:
                raise StepError("integrity", "; ".join(problems[:3]))
            assert self._run_smoke is not None
            return self._run_smoke(restored.database_url)

        return self._step("drill", run)

    def rto_s(self) -> float:
        """Restore plus service start to smoke green; the verification in between is not recovery."""
        restored = self._need("restore", self.restore)
        smoke = self._need("drill", self.drill)
        if smoke.failures:
            raise StepError("drill", "the drill never went green")
        return restored.elapsed_s + smoke.started_to_green_s

    def _need(self, name: str, fn: Callable[[], T]) -> T:
        return fn()
