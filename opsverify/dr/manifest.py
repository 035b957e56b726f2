"""Manifest: what a database holds (tables, rows, hashes, sequences, constraints), computed in the server."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from opsverify.db import user_schemas_sql
from opsverify.dr.tools import human_bytes, progress

# Tables bigger than this are fingerprinted in block ranges on several connections.
SPLIT_TABLE_PAGES = 2048


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


_EXCLUDE_NS = user_schemas_sql()
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
