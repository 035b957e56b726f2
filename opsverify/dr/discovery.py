"""Finding backups and telling their format from their content."""

from __future__ import annotations

import datetime as dt
import enum
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from opsverify.dr.tools import human_bytes, path_bytes

BACKUP_SUFFIXES = (".dump", ".backup", ".bak", ".pgdump", ".sql", ".gz", ".tar", ".custom", ".pgd", ".psql")
IGNORED_SUFFIXES = (".sha256", ".md5", ".sha1", ".log", ".txt", ".json", ".yml", ".yaml", ".sig", ".asc", ".lock")
# 20240115_020000, 20240115T020000Z, 2024-01-15T02-00-00, 2024-01-15_02:00, 20240115
_STAMP = re.compile(
    r"(?<!\d)(?P<y>20\d{2})-?(?P<m>[01]\d)-?(?P<d>[0-3]\d)"
    r"(?:[T_\-. ]?(?P<H>[0-2]\d)[-:.]?(?P<M>[0-5]\d)(?:[-:.]?(?P<S>[0-5]\d))?)?(?!\d)"
)


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
