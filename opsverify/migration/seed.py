"""Generic seeding and row counts: rows a migration must keep."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from opsverify.migration.runtime import _url_for_libpq
from opsverify.migration.schema import _SCHEMA_FILTER

# Generic seeding and row counts


@dataclass(frozen=True)
class _Column:
    name: str
    type_sql: str
    type_kind: str  # pg_type.typtype / typcategory, e.g. "e" enum
    udt: str
    not_null: bool
    has_default: bool
    fk: tuple[str, str] | None  # (table, column) for single-column foreign keys
    check_literal: str | None


@dataclass
class SeedReport:
    seeded: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{t}: +{n}" for t, n in sorted(self.seeded.items())]
        parts += [f"{t}: skipped ({why})" for t, why in sorted(self.skipped.items())]
        return ", ".join(parts) or "no tables"


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        f"""SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {_SCHEMA_FILTER.replace("%%", "%")}
              AND c.relname <> 'alembic_version' ORDER BY 1"""
    ).fetchall()
    return [str(r[0]) for r in rows]


def row_counts(url: str) -> dict[str, int]:
    """Exact `count(*)` of every user table."""
    counts: dict[str, int] = {}
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        for table in _tables(conn):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def _columns(conn: psycopg.Connection, table: str) -> list[_Column]:
    rows = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typtype, t.typcategory, t.typname,
               a.attnotnull,
               (d.adbin IS NOT NULL OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
               (SELECT quote_ident(fn.nspname) || '.' || quote_ident(fc.relname) || ' '
                       || quote_ident(fa.attname)
                  FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.confrelid
                  JOIN pg_namespace fn ON fn.oid = fc.relnamespace
                  JOIN pg_attribute fa ON fa.attrelid = f.confrelid AND fa.attnum = f.confkey[1]
                 WHERE f.conrelid = a.attrelid AND f.contype = 'f' AND array_length(f.conkey, 1) = 1
                   AND f.conkey[1] = a.attnum LIMIT 1),
               (SELECT pg_get_constraintdef(ck.oid) FROM pg_constraint ck
                 WHERE ck.conrelid = a.attrelid AND ck.contype = 'c' AND ck.conkey = ARRAY[a.attnum] LIMIT 1)
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()
    columns = []
    for name, type_sql, typtype, category, typname, not_null, has_default, fk, check in rows:
        literal = None
        if check:
            found = re.search(r"'((?:[^']|'')*)'::", check)
            literal = found.group(1) if found else None
        columns.append(
            _Column(
                name=name,
                type_sql=type_sql,
                type_kind=f"{typtype}{category}",
                udt=typname,
                not_null=bool(not_null),
                has_default=bool(has_default),
                fk=tuple(fk.rsplit(" ", 1)) if fk else None,  # type: ignore[arg-type]
                check_literal=literal,
            )
        )
    return columns


@dataclass(frozen=True)
class _CompositeFk:
    ref_table: str  # quoted, schema-qualified
    columns: tuple[str, ...]  # this table's, unquoted
    ref_columns: tuple[str, ...]  # the referenced table's, quoted


def _composite_fks(conn: psycopg.Connection, table: str) -> list[_CompositeFk]:
    """Foreign keys over several columns: their values must come from one referenced row."""
    rows = conn.execute(
        """
        SELECT quote_ident(fn.nspname) || '.' || quote_ident(fc.relname),
               array(SELECT a.attname::text FROM unnest(f.conkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.num ORDER BY k.i),
               array(SELECT quote_ident(a.attname) FROM unnest(f.confkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.num ORDER BY k.i)
          FROM pg_constraint f JOIN pg_class fc ON fc.oid = f.confrelid
          JOIN pg_namespace fn ON fn.oid = fc.relnamespace
         WHERE f.conrelid = %s::regclass AND f.contype = 'f' AND array_length(f.conkey, 1) > 1
         ORDER BY f.conname
        """,
        (table,),
    ).fetchall()
    return [_CompositeFk(str(ref), tuple(cols), tuple(refs)) for ref, cols, refs in rows]


def _value_sql(table: str, col: _Column) -> str | None:
    """A SQL expression over g.n (1..rows) giving a valid, distinct value; None when unknown."""
    ident = sql.Identifier(col.name).as_string(None)
    if col.check_literal is not None:
        return f"'{col.check_literal}'::{col.type_sql}"
    typtype, category = col.type_kind[0], col.type_kind[1:]
    if typtype == "e":
        return f"(enum_range(NULL::{col.type_sql}))[1]"
    if category == "N":  # numeric: above the current maximum so unique columns stay unique
        return f"((SELECT coalesce(max({ident}), 0) FROM {table}) + g.n)::{col.type_sql}"
    if category == "S":
        length = re.search(r"\((\d+)\)", col.type_sql)
        text = f"'{col.name[:8]}-' || g.n || '-' || md5(random()::text)"
        return f"left({text}, {length.group(1)})::{col.type_sql}" if length else f"({text})::{col.type_sql}"
    if category == "B":
        return "(g.n % 2 = 0)"
    if category == "D":
        return f"(now() - g.n * interval '1 minute')::{col.type_sql}"
    if category == "T":
        return f"(g.n * interval '1 second')::{col.type_sql}"
    if category == "A":
        return f"'{{}}'::{col.type_sql}"
    if category == "I":
        return f"('10.0.0.' || (g.n % 250 + 1))::{col.type_sql}"
    if col.udt == "uuid":
        return "md5(random()::text || g.n)::uuid"
    if col.udt in ("json", "jsonb"):
        return f"json_build_object('n', g.n)::{col.type_sql}"
    if col.udt == "bytea":
        return "decode(md5(g.n::text), 'hex')"
    return None


def seed_database(
    url: str, rows: int, *, only_empty: bool = False, seed_sql: str | None = None
) -> SeedReport:
    """Valid rows in every table, generated from the live schema (FK order, NOT NULL, unique values).

    Columns with defaults, identities and nullable non-FK columns are left to the database; a
    table whose required column has a type we cannot generate is skipped and reported.
    """
    report = SeedReport()
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        tables = _tables(conn)
        columns = {t: _columns(conn, t) for t in tables}
        composites = {t: _composite_fks(conn, t) for t in tables}
        order: list[str] = []

        def visit(table: str, path: tuple[str, ...]) -> None:
            if table in order or table in path:
                return
            refs = [c.fk[0] for c in columns.get(table, []) if c.fk] + [f.ref_table for f in composites[table]]
            for ref in refs:
                if ref != table and ref in columns:
                    visit(ref, (*path, table))
            order.append(table)

        for table in tables:
            visit(table, ())
        for table in order:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if only_empty and row and row[0]:
                continue
            names: list[str] = []
            values: list[str] = []
            problem = None
            # Composite keys: every column of one key reads the same referenced row (same order, same offset).
            from_row: dict[str, str] = {}
            required = {c.name for c in columns[table] if c.not_null}
            for fk in composites[table]:
                if fk.ref_table not in columns:
                    continue
                ref_count_row = conn.execute(f"SELECT count(*) FROM {fk.ref_table}").fetchone()
                ref_count = int(ref_count_row[0]) if ref_count_row else 0
                if ref_count == 0:
                    if required & set(fk.columns):
                        problem = f"({', '.join(fk.columns)}) references empty {fk.ref_table}"
                        break
                    continue
                key_order = ", ".join(fk.ref_columns)
                for col_name, ref_col in zip(fk.columns, fk.ref_columns, strict=True):
                    from_row.setdefault(
                        col_name,
                        f"(SELECT {ref_col} FROM {fk.ref_table} ORDER BY {key_order}"
                        f" OFFSET ((g.n - 1) % {ref_count}) LIMIT 1)",
                    )
            for col in columns[table]:
                if problem:
                    break
                if col.name in from_row:
                    names.append(col.name)
                    values.append(from_row[col.name])
                    continue
                if col.fk and col.fk[0] in columns:
                    ref_table, ref_col = col.fk
                    ref_count_row = conn.execute(f"SELECT count(*) FROM {ref_table}").fetchone()
                    ref_count = int(ref_count_row[0]) if ref_count_row else 0
                    if ref_count == 0:
                        if col.not_null:
                            problem = f"{col.name} references empty {ref_table}"
                            break
                        continue
                    names.append(col.name)
                    values.append(
                        f"(SELECT {ref_col} FROM {ref_table} ORDER BY {ref_col}"
                        f" OFFSET ((g.n - 1) % {ref_count}) LIMIT 1)"
                    )
                    continue
                if col.has_default or not col.not_null:
                    continue
                expr = _value_sql(table, col)
                if expr is None:
                    problem = f"no generator for {col.name} {col.type_sql}"
                    break
                names.append(col.name)
                values.append(expr)
            if problem:
                report.skipped[table] = problem
                continue
            cols = ", ".join(sql.Identifier(n).as_string(None) for n in names)
            statement = (
                f"INSERT INTO {table} ({cols}) SELECT {', '.join(values)}"
                f" FROM generate_series(1, {rows}) AS g(n)"
                if names
                else f"INSERT INTO {table} DEFAULT VALUES"
            )
            try:
                if names:
                    conn.execute(statement)  # type: ignore[call-overload]
                else:
                    for _ in range(rows):
                        conn.execute(statement)  # type: ignore[call-overload]
                report.seeded[table] = rows
            except psycopg.Error as exc:
                report.skipped[table] = str(exc).strip().splitlines()[0][:160]
        if seed_sql:
            try:
                conn.execute(seed_sql)  # type: ignore[call-overload]
            except psycopg.Error as exc:
                report.skipped["seed_sql"] = str(exc).strip().splitlines()[0][:160]
    return report


@dataclass(frozen=True)
class RowLoss:
    table: str
    before: int
    after: int


def compare_row_counts(before: dict[str, int], after: dict[str, int]) -> list[RowLoss]:
    """Tables present on both sides whose row count changed."""
    return [RowLoss(t, before[t], after[t]) for t in sorted(before) if t in after and before[t] != after[t]]


def describe_counts(losses: Sequence[RowLoss]) -> str:
    return "\n".join(f"{x.table}: {x.before} -> {x.after} rows ({x.after - x.before:+d})" for x in losses)
