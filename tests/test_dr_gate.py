"""The DR gate, run for real: green on the reference service, and each fault fails exactly its step.

Faults are real artefacts: a truncated archive, a dump of another database, a restore script that
exits 0 after deleting rows, a backup named years ago, a .sql.gz with a bad statement, an RDB copied
without BGSAVE. Each run uses a small source (--dr-rows 2000) so the whole file stays within a few
minutes. Budget: ~2.5 min on 2 cores.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from opsverify.reference import migrate_and_seed
from opsverify.services import PostgresServer, RedisServer, docker_answers
from tests.gaterun import GateRun, run_gates

ROWS = "2000"
PG_STEPS = "not redis"


def _profile(tmp_path: Path, name: str, backup: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'extends = "sample"\n\n[backup]\n{backup}\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pg(shared_servers: tuple[PostgresServer, RedisServer]) -> PostgresServer:
    return shared_servers[0]


@pytest.fixture(scope="module")
def sample_db(pg: PostgresServer) -> str:
    """A migrated, seeded reference database on the shared server: what real backups are taken of."""
    name = pg.template("dr-selftest-sample", lambda url: migrate_and_seed(url, rows=500))
    return pg.url(name)


def _dump(pg: PostgresServer, url: str, out: Path, *extra: str) -> Path:
    with out.open("wb") as fh:
        subprocess.run([*pg.tool("pg_dump"), "--dbname", url, *extra], stdout=fh, check=True, timeout=120)
    return out


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y%m%d_%H%M%S")


@pytest.fixture(scope="module")
def good_dump(pg: PostgresServer, sample_db: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _dump(pg, sample_db, tmp_path_factory.mktemp("dumps") / "good.dump", "-Fc")


def test_fresh_drill_green_on_reference_service(gates: Callable[..., GateRun], pg: PostgresServer) -> None:
    before = set(pg.list_own_databases())
    run = gates("-m", "dr", "--dr-rows", ROWS)
    run.assert_all_passed()
    assert run.summary["result"] == "OK", run.summary["attention"]
    figures = run.summary["figures"]
    assert {"rto_s", "restore_s", "backup_bytes"} <= set(figures), figures
    assert "rpo_s" not in figures  # fresh mode: the backup is seconds old by construction
    assert 0 < figures["restore_s"] <= figures["rto_s"] < 60
    assert run.summary["budgets"]["rto_s"] == 1800
    for step in ("test_backup_taken", "test_archive_reads_to_the_end", "test_restore_completes",
                 "test_restored_copy_matches_source", "test_amcheck_clean", "test_service_smoke_green_on_restore",
                 "test_rto_within_budget", "test_redis_snapshot_restores_every_key", "test_source_never_written"):
        assert any(step in t for t in run.passed), f"{step} did not pass: {run.outcomes}"
    assert "fresh mode" in run.message("test_rpo_within_budget")
    # Nothing leaked: every throwaway database of the run is gone.
    assert set(pg.list_own_databases()) <= before


def test_newest_backup_mode_green(gates: Callable[..., GateRun], good_dump: Path, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    now = dt.datetime.now()
    (backups / f"app_{_stamp(now)}.backup").write_bytes(good_dump.read_bytes())  # format from content, not name
    (backups / f"app_{_stamp(now - dt.timedelta(days=1))}.dump").write_bytes(good_dump.read_bytes())
    (backups / f"app_{_stamp(now)}.backup.sha256").write_text("not a backup\n")
    profile = _profile(tmp_path, "newest", "rpo_s = 3600")
    run = gates("-m", "dr", "-k", PG_STEPS, "--target", str(profile), "--backup-dir", str(backups))
    run.assert_all_passed()
    assert 0 <= run.summary["figures"]["rpo_s"] < 600, run.summary["figures"]
    assert any("test_restored_revision_known" in t for t in run.passed), run.outcomes
    assert any("test_service_smoke_green_on_restore" in t for t in run.passed), run.outcomes


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers here (containers provider needs one)")
def test_drill_with_the_images_own_tools(tmp_path: Path, good_dump: Path) -> None:
    """Where this host has no pg_dump of the server's major version (postgres:16 beside a PG 15
    client, say), the tools run inside the server's container, archives streamed through stdin and
    stdout: green on a healthy source, and a truncated newest backup still fails its own step."""
    env = {"OPS_PG_TOOLS": "container", "OPS_SERVICES": ""}
    run = run_gates("-m", "dr", "--dr-rows", ROWS, "--services", "containers", report_dir=tmp_path / "green", env=env)
    run.assert_all_passed()
    assert run.summary["provider"] == "containers"
    report = (run.run_dir / "report.html").read_text(encoding="utf-8")
    # The report's text extras are base64 data URIs; the restore step's says how it ran.
    encoded = re.findall(r"text/plain;charset=utf-8;base64,([A-Za-z0-9+/=]+)", report)
    texts = [base64.b64decode(b).decode() for b in encoded]
    restore = [t for t in texts if t.startswith("pg_restore")]
    assert restore and "through stdin into the container" in restore[0], restore

    args = _truncated(tmp_path, good_dump)
    run = run_gates("-m", "dr", "-k", PG_STEPS, "--services", "containers", *args,
                    report_dir=tmp_path / "truncated", env=env)
    run.assert_only_failed("test_archive_reads_to_the_end")
    assert "truncated" in run.message("test_archive_reads_to_the_end").lower(), run.message(
        "test_archive_reads_to_the_end"
    )


# ---------------------------------------------------------------------------------------------
# Faults: each builds its artefact, runs the gate, and names the one check that must fail.


def _truncated(tmp_path: Path, good_dump: Path, **_: object) -> list[str]:
    backups = tmp_path / "backups"
    backups.mkdir()
    now = dt.datetime.now()
    data = good_dump.read_bytes()
    (backups / f"app_{_stamp(now - dt.timedelta(hours=6))}.dump").write_bytes(data)
    (backups / f"app_{_stamp(now)}.dump").write_bytes(data[: int(len(data) * 0.6)])
    return ["--target", str(_profile(tmp_path, "truncated", "rpo_s = 3600")), "--backup-dir", str(backups)]


def _other_database(tmp_path: Path, pg: PostgresServer, **_: object) -> list[str]:
    name = pg.create_database()
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO invoices SELECT n, n * 1.5 FROM generate_series(1, 3000) n")
    command = f"{{pg_dump}} -Fc --dbname {pg.url(name)} -f {{output}}"
    return ["--target", str(_profile(tmp_path, "otherdb", f"command = '{command}'"))]


def _restore_drops_rows(tmp_path: Path, **_: object) -> list[str]:
    command = ("{pg_restore} --no-owner --dbname {dsn} {input} && "
               "{psql} -X -q --dbname {dsn} -c \"DELETE FROM items WHERE id % 7 = 0\"")
    return ["--target", str(_profile(tmp_path, "droprows", f"restore_command = '{command}'"))]


def _old_backup(tmp_path: Path, good_dump: Path, **_: object) -> list[str]:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "app_20200115_020000.dump").write_bytes(good_dump.read_bytes())
    return ["--target", str(_profile(tmp_path, "old", "rpo_s = 3600")), "--backup-dir", str(backups)]


def _sql_gz_error(tmp_path: Path, pg: PostgresServer, sample_db: str, **_: object) -> list[str]:
    plain = _dump(pg, sample_db, tmp_path / "plain.sql", "-Fp").read_text()
    marker = "-- PostgreSQL database dump complete"
    broken = plain.replace(marker, "INSERT INTO items_typo (id) VALUES (1);\n\n" + marker)
    backups = tmp_path / "backups"
    backups.mkdir()
    with gzip.open(backups / f"app_{_stamp(dt.datetime.now())}.sql.gz", "wt") as fh:
        fh.write(broken)
    return ["--target", str(_profile(tmp_path, "sqlgz", "rpo_s = 3600")), "--backup-dir", str(backups)]


def _rdb_without_bgsave(tmp_path: Path, rd: RedisServer, **_: object) -> list[str]:
    client = redis.Redis(host=rd.host, port=rd.port, password=rd.password or None)
    try:
        rdb = Path(client.config_get("dir")["dir"]) / client.config_get("dbfilename")["dbfilename"]
        since = client.lastsave()
        client.bgsave()  # a stale dump.rdb exists, as on any server that saved once
        deadline = time.monotonic() + 30
        while client.lastsave() == since and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()
    return ["--target", str(_profile(tmp_path, "rdb", f"redis_command = 'cp {rdb} {{output}}'"))]


