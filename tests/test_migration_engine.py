"""The migration engine on a real server: what a schema snapshot sees, and a stairway under an
env.py that runs all steps of an alembic run in one transaction (alembic's own template)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from opsverify.migration import MigrationTree, TemplateChain, schema_snapshot, seed_database, stairway
from opsverify.services import PostgresServer, RedisServer

TREES = Path(__file__).parent / "data" / "migrations"

# One object of every kind the snapshot compares, plus what it must leave out (alembic's table,
# an extension's functions, toast tables and sequences' columns).
SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE app.items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mood app.mood NOT NULL DEFAULT 'ok',
    qty posint,
    twice bigint GENERATED ALWAYS AS (id * 2) STORED,
    note text UNIQUE
);
CREATE TABLE orders (id serial PRIMARY KEY, item_id bigint REFERENCES app.items (id), CHECK (id > 0));
CREATE INDEX ix_orders_item ON orders (item_id);
CREATE VIEW recent AS SELECT id FROM orders;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch();
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
"""


@pytest.fixture
def database(shared_servers: tuple[PostgresServer, RedisServer]) -> Iterator[str]:
    pg, _ = shared_servers
    with pg.throwaway_database() as url:
        yield url


def _run(url: str, sql: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def test_snapshot_sees_every_kind_of_object_and_nothing_of_its_own(database: str) -> None:
    _run(database, SCHEMA)
    lines = schema_snapshot(database).items
    expected = {
        "schema app",
        "extension pgcrypto",
        "type app.mood sad,ok",
        "type public.posint d",
        "relation r app.items",
        "column app.items.id bigint NOT NULL IDENTITY a",
        "column app.items.mood app.mood NOT NULL DEFAULT 'ok'::app.mood",
        "column app.items.twice bigint DEFAULT (id * 2) GENERATED",
        "column public.orders.id integer NOT NULL DEFAULT nextval('orders_id_seq'::regclass)",
        "relation S public.orders_id_seq",
        "constraint public.orders orders_id_check CHECK ((id > 0))",
        "constraint public.orders orders_item_id_fkey FOREIGN KEY (item_id) REFERENCES app.items(id)",
        "index CREATE INDEX ix_orders_item ON public.orders USING btree (item_id)",
        "function public.touch()",
        "trigger CREATE TRIGGER orders_touch BEFORE INSERT ON public.orders FOR EACH ROW EXECUTE FUNCTION touch()",
        "relation v public.recent",
    }
    assert expected <= lines, sorted(expected - lines)
    assert any(line.startswith("view public.recent AS ") for line in lines)
    assert not [line for line in lines if "alembic_version" in line or "pg_toast" in line], sorted(lines)
    assert not [line for line in lines if line.startswith("function public.gen_random")], "extension member"


@pytest.mark.parametrize(
    ("change", "gone", "added"),
    [
        ("ALTER TABLE app.items ALTER COLUMN mood DROP DEFAULT", "DEFAULT 'ok'", "column app.items.mood app.mood NOT"),
        ("ALTER TYPE app.mood ADD VALUE 'happy'", "type app.mood sad,ok", "type app.mood sad,ok,happy"),
        ("DROP TRIGGER orders_touch ON orders", "trigger CREATE TRIGGER orders_touch", None),
        ("ALTER TABLE orders DROP CONSTRAINT orders_id_check", "orders_id_check", None),
        ("DROP INDEX ix_orders_item", "ix_orders_item", None),
        ("CREATE INDEX ix_items_note ON app.items (note)", None, "index CREATE INDEX ix_items_note"),
    ],
)
def test_snapshot_diff_names_the_change(database: str, change: str, gone: str | None, added: str | None) -> None:
    _run(database, SCHEMA)
    before = schema_snapshot(database)
    _run(database, change)
    missing, extra = before.diff(schema_snapshot(database))
    assert missing or extra, f"{change!r} went unseen"
    if gone:
        assert any(gone in line for line in missing), missing
    if added:
        assert any(added in line for line in extra), extra


def test_stairway_with_one_transaction_per_run_keeps_an_irreversible_revision_usable(
    shared_servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    """alembic's default env.py wraps a whole run in one transaction: when the downgrade of an
    irreversible revision raises, the run's upgrade rolls back with it. The revision is still a
    skip with its reason, and its children still start from a database at it."""
    pg, _ = shared_servers
    shared = tmp_path / "_shared"
    shutil.copytree(TREES / "_shared", shared)
    env = shared / "env.py"
    one_transaction = env.read_text().replace("transaction_per_migration=True)", "transaction_per_migration=False)")
    assert "transaction_per_migration=False" in one_transaction
    env.write_text(one_transaction)
    tree_dir = tmp_path / "merge_valid"
    shutil.copytree(TREES / "merge_valid", tree_dir)
    tree = MigrationTree(tree_dir / "alembic.ini")
    chain = TemplateChain(pg, tree)
    try:
        outcomes = {r.id: stairway(chain, r.id) for r in tree.ordered}
    finally:
        chain.close()
    assert outcomes["b2000002"].skip and "NotImplementedError" in outcomes["b2000002"].skip
    failed = {rev: o.failure for rev, o in outcomes.items() if o.failure}
    assert not failed, failed
    assert [rev for rev, o in outcomes.items() if o.skip] == ["b2000002"]


def test_seeding_fills_composite_foreign_keys_from_one_referenced_row(database: str) -> None:
    """A NOT NULL foreign key over two columns gets both values from the same parent row; before,
    such a table was skipped and its rows never took part in the data-safety checks."""
    _run(
        database,
        """
        CREATE TABLE tenants (id bigint PRIMARY KEY, name text NOT NULL);
        CREATE TABLE projects (tenant_id bigint NOT NULL REFERENCES tenants (id), id bigint NOT NULL,
                               title text NOT NULL, PRIMARY KEY (tenant_id, id));
        CREATE TABLE tasks (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, project_id bigint NOT NULL,
                            FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id));
        INSERT INTO tenants SELECT n, 'tenant ' || n FROM generate_series(1, 7) n;
        """,
    )
    # 7 tenants, 30 projects: project keys are (1, 1) ... (7, 7), (1, 8) ..., so two independently
    # generated columns cannot satisfy the key by coincidence.
    report = seed_database(database, 30, only_empty=True)
    assert report.skipped == {}, report.describe()
    assert report.seeded == {"public.projects": 30, "public.tasks": 30}, report.describe()
    with psycopg.connect(database) as conn:
        orphans = conn.execute(
            "SELECT count(*) FROM tasks t LEFT JOIN projects p ON (p.tenant_id, p.id) = (t.tenant_id, t.project_id)"
            " WHERE p.id IS NULL"
        ).fetchone()
        spread = conn.execute("SELECT count(DISTINCT (tenant_id, project_id)) FROM tasks").fetchone()
    assert orphans == (0,)
    assert spread is not None and spread[0] > 1, "every task points at the same project"
