"""Restoring an archive into a fresh database."""

from __future__ import annotations

from dataclasses import dataclass

from opsverify.dr.archive import _CountingSink, _feed_file
from opsverify.dr.backup import BackupArtifact, _tool_placeholders
from opsverify.dr.discovery import ArchiveFormat
from opsverify.dr.errors import DrError
from opsverify.dr.tools import STDERR_TAIL_LINES, PgClient, expand, human_bytes, progress, run_tool
from opsverify.redact import redact

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
