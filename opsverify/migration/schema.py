"""Schema snapshots: what a downgrade must restore, read in one round trip."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from opsverify.db import alembic_versions, is_system_schema, user_schemas_sql
from opsverify.migration.runtime import _url_for_libpq

# Schema snapshots: what a downgrade must restore


@dataclass(frozen=True)
class Schema:
    items: frozenset[str]

    def diff(self, other: Schema) -> tuple[list[str], list[str]]:
        """(only in self, only in other)"""
        return sorted(self.items - other.items), sorted(other.items - self.items)


_SCHEMA_FILTER = user_schemas_sql()
# FirstNormalObjectId: every object created after initdb (all a migration can touch) has an OID at or
# above it, so the snapshot never scans the built-in catalog rows (a third of its time otherwise).
_FIRST_USER_OID = 16384
# One statement, each branch a scan of a single catalog (no joins): after a step's DDL the plan is
# rebuilt, and planning joins over the catalogs was most of a snapshot's cost (2.7 ms of ~6). Names
# and filters are put together here, in Python. Lines read as "<kind> <definition>".
_SNAPSHOT_SQL = f"""
SELECT 'c', c.oid::int8, c.relnamespace::int8, c.relname::text, c.relkind::text,
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END
  FROM pg_class c WHERE c.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'n', n.oid::int8, NULL, n.nspname::text, NULL, NULL FROM pg_namespace n
UNION ALL SELECT 'a', a.attrelid::int8, a.attnum::int8, a.attname::text,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
       CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
  FROM pg_attribute a WHERE a.attrelid >= {_FIRST_USER_OID} AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL SELECT 'd', d.adrelid::int8, d.adnum::int8, pg_get_expr(d.adbin, d.adrelid), NULL, NULL
  FROM pg_attrdef d WHERE d.adrelid >= {_FIRST_USER_OID}
UNION ALL SELECT 'k', con.conrelid::int8, NULL, con.conname::text, pg_get_constraintdef(con.oid), NULL
  FROM pg_constraint con WHERE con.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'i', i.indrelid::int8, NULL, pg_get_indexdef(i.indexrelid), NULL, NULL
  FROM pg_index i WHERE i.indexrelid >= {_FIRST_USER_OID}
UNION ALL SELECT 't', t.oid::int8, t.typnamespace::int8, t.typname::text, t.typtype::text, NULL
  FROM pg_type t WHERE t.oid >= {_FIRST_USER_OID} AND t.typtype IN ('e', 'd')
UNION ALL SELECT 'e', e.enumtypid::int8, NULL, e.enumlabel::text, e.enumsortorder::text, NULL
  FROM pg_enum e WHERE e.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'p', p.oid::int8, p.pronamespace::int8, p.proname::text,
       pg_get_function_identity_arguments(p.oid), NULL
  FROM pg_proc p WHERE p.oid >= {_FIRST_USER_OID}
UNION ALL SELECT 'x', dep.objid::int8, NULL, NULL, NULL, NULL
  FROM pg_depend dep WHERE dep.deptype = 'e' AND dep.objid >= {_FIRST_USER_OID}
UNION ALL SELECT 'g', tg.tgrelid::int8, NULL, pg_get_triggerdef(tg.oid), NULL, NULL
  FROM pg_trigger tg WHERE tg.oid >= {_FIRST_USER_OID} AND NOT tg.tgisinternal
UNION ALL SELECT 'X', NULL, NULL, ext.extname::text, NULL, NULL FROM pg_extension ext
"""
_TABLE_KINDS = frozenset("rpvmf")
_RELATION_KINDS = frozenset("rpvmfS")


def _schema_lines(rows: Iterable[Sequence[Any]]) -> frozenset[str]:
    """The catalog rows of _SNAPSHOT_SQL as comparable lines (names and definitions, not OIDs)."""
    by_kind: dict[str, list[Sequence[Any]]] = {}
    for row in rows:
        by_kind.setdefault(row[0], []).append(row)
    schemas = {int(r[1]): str(r[3]) for r in by_kind.get("n", ())}
    user_schema = {oid: not is_system_schema(name) for oid, name in schemas.items()}
    # relation oid -> (qualified name, relkind, kept: in a user schema and not alembic's own table)
    rels: dict[int, tuple[str, str, bool]] = {}
    lines: set[str] = set()
    for _, oid, nsp, name, kind, viewdef in by_kind.get("c", ()):
        qualified = f"{schemas.get(nsp, '?')}.{name}"
        rels[oid] = (qualified, kind, user_schema.get(nsp, False))
        if not user_schema.get(nsp, False):
            continue
        if kind in _RELATION_KINDS and not name.startswith("alembic_version"):
            lines.add(f"relation {kind} {qualified}")
        if kind in ("v", "m"):
            lines.add(f"view {qualified} AS {viewdef}")

    def table(oid: int) -> str | None:
        """The table's qualified name when its objects belong in the snapshot."""
        found = rels.get(oid)
        if found is None or not found[2] or found[0].endswith(".alembic_version"):
            return None
        return found[0]

    defaults = {(r[1], r[2]): r[3] for r in by_kind.get("d", ())}
    for _, relid, num, name, typ, suffix in by_kind.get("a", ()):
        owner = table(relid)
        if owner is None or rels[relid][1] not in _TABLE_KINDS:
            continue
        default = defaults.get((relid, num))
        lines.add(f"column {owner}.{name} {typ}{'' if default is None else ' DEFAULT ' + default}{suffix}")
    for _, relid, _n, name, definition, _v in by_kind.get("k", ()):
        owner = table(relid)
        if owner is not None:
            lines.add(f"constraint {owner} {name} {definition}")
    for _, relid, _n, definition, _d, _v in by_kind.get("i", ()):
        if table(relid) is not None:
            lines.add(f"index {definition}")
    labels: dict[int, list[tuple[float, str]]] = {}
    for _, typ, _n, label, order, _v in by_kind.get("e", ()):
        labels.setdefault(typ, []).append((float(order), label))
    for _, oid, nsp, name, typtype, _v in by_kind.get("t", ()):
        if user_schema.get(nsp, False):
            enum = ",".join(label for _, label in sorted(labels.get(oid, ())))
            lines.add(f"type {schemas[nsp]}.{name} {enum or typtype}")
    extension_owned = {int(r[1]) for r in by_kind.get("x", ())}
    for _, oid, nsp, name, args, _v in by_kind.get("p", ()):
        if user_schema.get(nsp, False) and oid not in extension_owned:
            lines.add(f"function {schemas[nsp]}.{name}({args})")
    for _, relid, _n, definition, _d, _v in by_kind.get("g", ()):
        found = rels.get(relid)
        if found is not None and found[2]:
            lines.add(f"trigger {definition}")
    for row in by_kind.get("X", ()):
        if row[3] != "plpgsql":
            lines.add(f"extension {row[3]}")
    for name in schemas.values():
        if not is_system_schema(name) and name != "public":
            lines.add(f"schema {name}")
    return frozenset(lines)


def _snapshot(conn: psycopg.Connection) -> Schema:
    """The schema on `conn`, in whatever transaction it is in (prepared: most DDL keeps the plan)."""
    return Schema(_schema_lines(conn.execute(_SNAPSHOT_SQL, prepare=True).fetchall()))  # type: ignore[call-overload]


def schema_snapshot(url: str) -> Schema:
    """The database's schema as comparable lines (names and definitions, not physical order)."""
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5) as conn:
        return _snapshot(conn)


def current_heads(url: str, *, read_only: bool = False) -> tuple[str, ...]:
    """`alembic current`: the versions in alembic_version (empty when the table does not exist)."""
    options = "-c default_transaction_read_only=on" if read_only else None
    with psycopg.connect(_url_for_libpq(url), autocommit=True, connect_timeout=5, options=options) as conn:
        return alembic_versions(conn) or ()
