"""Verifying an archive: it reads end to end with the tool that will restore it."""

from __future__ import annotations

import gzip
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsverify.dr.backup import BackupArtifact
from opsverify.dr.discovery import ArchiveFormat
from opsverify.dr.errors import DrError
from opsverify.dr.tools import PgClient, ToolResult, human_bytes, progress, run_tool

PLAIN_SQL_DONE = (b"PostgreSQL database dump complete", b"PostgreSQL database cluster dump complete")


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
        result = run_tool(argv, env=env, timeout_s=timeout_s, stdin_feed=feed, stdout_sink=sink.write)
        # stdout is counted, not stored: a 1 GB archive expands to several GB of SQL.
        return _ReadResult(result.returncode, [], result)


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
