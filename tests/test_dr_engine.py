"""Pure parts of the DR engine: format from content, newest by name else mtime, readable diffs."""

from __future__ import annotations

import datetime as dt
import gzip
import os
from pathlib import Path

from opsverify.dr import (
    ArchiveFormat,
    Manifest,
    RedisKey,
    TableFingerprint,
    compare_keyspaces,
    detect_format,
    diff_manifests,
    find_backups,
    timestamp_in_name,
)


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_bytes(b"PGDMP\x01\x0e\x00")
    (tmp_path / "b.dump").write_bytes(gzip.compress(b"--\n-- PostgreSQL database dump\n"))
    (tmp_path / "c.bin").write_bytes(gzip.compress(b"PGDMP\x01"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "toc.dat").write_bytes(b"PGDMP")
    (tmp_path / "e.dump").write_bytes(b"")
    assert detect_format(tmp_path / "a.sql") is ArchiveFormat.CUSTOM
    assert detect_format(tmp_path / "b.dump") is ArchiveFormat.GZIP_SQL
    assert detect_format(tmp_path / "c.bin") is ArchiveFormat.GZIP_CUSTOM
    assert detect_format(tmp_path / "d") is ArchiveFormat.DIRECTORY
    assert detect_format(tmp_path / "e.dump") is ArchiveFormat.UNKNOWN


def test_timestamp_in_name() -> None:
    assert timestamp_in_name("ringo_20240115_020000.sql.gz") == dt.datetime(2024, 1, 15, 2, 0, 0).astimezone()
    assert timestamp_in_name("backup-2024-01-15T02-30.dump") == dt.datetime(2024, 1, 15, 2, 30).astimezone()
    assert timestamp_in_name("backup_20240101.sql.gz") == dt.datetime(2024, 1, 1).astimezone()
    assert timestamp_in_name("latest.sql.gz") is None
    assert timestamp_in_name("db_20241399.dump") is None  # not a date


def test_newest_by_name_then_mtime_and_broken_newest_is_kept(tmp_path: Path) -> None:
    (tmp_path / "app_20240101_000000.dump").write_bytes(b"PGDMP")
    (tmp_path / "app_20240301_000000.dump").write_bytes(b"garbage")  # newest by name, unreadable: still a candidate
    (tmp_path / "app_20240301_000000.dump.sha256").write_text("x")
    (tmp_path / "README").write_text("notes")
    undated = tmp_path / "latest.dump"
    undated.write_bytes(b"PGDMP")
    old = dt.datetime(2023, 6, 1).timestamp()
    os.utime(undated, (old, old))
    found, ignored = find_backups(tmp_path)
    assert [c.path.name for c in found] == ["app_20240301_000000.dump", "app_20240101_000000.dump", "latest.dump"]
    assert found[0].format is ArchiveFormat.UNKNOWN and found[2].taken_from == "mtime"
    assert set(ignored) == {"app_20240301_000000.dump.sha256", "README"}


def _manifest(rows: int, content: int = 1, tables: tuple[str, ...] = ("public.items",)) -> Manifest:
    return Manifest(
        tables={t: TableFingerprint(rows, content) for t in tables},
        sequences={"public.items_id_seq": rows},
        constraints={},
        indexes={"public.items_pkey": "CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id)"},
        schema=("column public.items.id bigint NOT NULL #1",),
    )


def test_manifest_diff_reads_like_a_report() -> None:
    assert diff_manifests(_manifest(10), _manifest(10)) == []
    assert diff_manifests(_manifest(10), _manifest(8)) == [
        "table public.items: source 10 rows, restored 8 rows (-2)",
        "sequence public.items_id_seq: source 10 vs restored 8",
    ]
    assert "different content" in diff_manifests(_manifest(10, 1), _manifest(10, 2))[0]
    missing = diff_manifests(_manifest(1, tables=("public.a", "public.b")), _manifest(1, tables=("public.a",)))
    assert missing[0] == "tables missing in restored: public.b"


def test_redis_compare_tolerates_expired_keys_only() -> None:
    live = {"k": RedisKey("string", -1, b"v"), "t": RedisKey("string", 50, b"x"), "h": RedisKey("hash", 9000, [])}
    restored = {"h": RedisKey("hash", 8000, [])}
    problems = compare_keyspaces(live, restored, elapsed_ms=100)
    assert problems == ["1 of 3 keys missing in the restored RDB: k"]  # "t" could have expired meanwhile
    assert compare_keyspaces({"h": RedisKey("hash", -1, [])}, restored, elapsed_ms=0) == [
        "h: TTL -1 ms live, 8000 ms restored"
    ]
