"""Backups: take one with pg_dump (or the profile's command), or pick the newest in a directory."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from opsverify.dr.discovery import ArchiveFormat, BackupCandidate, detect_format, find_backups
from opsverify.dr.errors import DrError, log
from opsverify.dr.tools import PgClient, expand, human_bytes, path_bytes, progress, run_tool
from opsverify.errors import OpsError

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
