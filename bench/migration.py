"""Our per-revision stairway vs pytest-alembic 0.13's test_up_down_consistency, same tree, same server.

    .venv/bin/python bench/migration.py [--revisions 50] [--venv /tmp/bench-venv]

Generates a linear tree of N revisions (tables and nullable columns, each with a real
downgrade) in a temp dir, starts one throwaway PostgreSQL (local provider, or the servers in
OPS_DATABASE_URL / OPS_REDIS_URL), then times, in one run:

* ours, engine: every revision's stairway (upgrade, downgrade to the parent with a schema
  comparison, upgrade again) through opsverify.migration, in this process;
* ours, gate:   `pytest suites -m migration -k test_stairway --alembic-ini TREE` (a subprocess,
  pytest start-up included): what a user runs;
* theirs:       `pytest --test-alembic -k test_up_down_consistency` in its own venv (pytest-alembic
  0.13 does not load on pytest 9, so the venv pins pytest<9; created here when missing).

Prints each time and the ratios ours/theirs. The goal (<= 0.5) is on test time, the stairway
against their test_up_down_consistency; wall time is printed too, and carries what neither
stairway does: start-up (Python, pytest, alembic and psycopg imports, about 1.3 s of ours), our
plugins and report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from opsverify import migration as migrations  # noqa: E402
from opsverify.services import ExternalProvider, LocalProvider  # noqa: E402

ENV_PY = REPO_ROOT / "tests" / "data" / "migrations" / "_shared" / "env.py"
THEIR_PACKAGES = ["pytest<9", "pytest-alembic==0.13.*", "psycopg[binary]", "sqlalchemy", "alembic"]
RUN_TIMEOUT_S = 900


def generate_tree(root: Path, count: int) -> Path:
    """A linear tree: every 10th revision creates a table, the others add a nullable column to it."""
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "env.py").write_text(ENV_PY.read_text())
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s\nversion_locations = %(here)s/versions\n"
        "path_separator = os\nsqlalchemy.url =\n"
    )
    previous = None
    for i in range(count):
        rev = f"b{i:07d}"
        table = f"bench_{i // 10}"
        if i % 10 == 0:
            slug = f"create_{table}"
            up = (
                f'op.create_table("{table}", '
                f'sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True), '
                f'sa.Column("name", sa.Text(), nullable=False))'
            )
            down = f'op.drop_table("{table}")'
        else:
            slug = f"add_{table}_c{i}"
            up = f'op.add_column("{table}", sa.Column("c{i}", sa.Text(), nullable=True))'
            down = f'op.drop_column("{table}", "c{i}")'
        (versions / f"{rev}_{slug}.py").write_text(
            textwrap.dedent(
                f'''\
                """{slug.replace("_", " ")}

                Revision ID: {rev}
                Revises: {previous or ""}
                """

                import sqlalchemy as sa
                from alembic import op

                revision = "{rev}"
                down_revision = {f'"{previous}"' if previous else None}
                branch_labels = None
                depends_on = None


                def upgrade() -> None:
                    {up}


                def downgrade() -> None:
                    {down}
                '''
            )
        )
        previous = rev
    return root / "alembic.ini"


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import pytest_alembic, psycopg, pytest; assert int(pytest.__version__.split('.')[0]) < 9",
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} (pytest<9, pytest-alembic 0.13) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *THEIR_PACKAGES], check=True, timeout=600)
    return python


THEIR_CONFTEST = """
import os

import pytest
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool


@pytest.fixture
def alembic_config():
    return Config(os.environ["BENCH_ALEMBIC_INI"])


@pytest.fixture
def alembic_engine():
    return create_engine(os.environ["BENCH_DATABASE_URL"], poolclass=NullPool)
"""


def junit_time(path: Path, name: str) -> float:
    root = ET.parse(path).getroot()
    return sum(float(c.get("time", 0)) for c in root.iter("testcase") if name in c.get("name", ""))


def junit_outcomes(path: Path) -> dict[str, int]:
    root = ET.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        key = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        counts[key] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--revisions", type=int, default=50)
    parser.add_argument("--venv", default="/tmp/bench-venv")
    args = parser.parse_args()
    their_python = ensure_venv(Path(args.venv))
    provider = ExternalProvider() if os.environ.get("OPS_DATABASE_URL") else LocalProvider()
    pg, rd = provider.start()
    try:
        with tempfile.TemporaryDirectory(prefix="opsverify-bench-") as tmp:
            ini = generate_tree(Path(tmp) / "tree", args.revisions)
            tree = migrations.MigrationTree(ini)
            assert len(tree.revisions) == args.revisions

            # Ours, in process: exactly what each test_stairway[...] calls.
            started = time.perf_counter()
            chain = migrations.TemplateChain(pg, tree)
            try:
                outcomes = [migrations.stairway(chain, r.id) for r in tree.ordered]
            finally:
                chain.close()
            ours_engine = time.perf_counter() - started
            bad = [o for o in outcomes if o.failure or o.skip]
            assert not bad, bad[0]

            # Ours, as a user runs it.
            env = {
                **os.environ,
                "OPS_DATABASE_URL": pg.url(),
                "OPS_REDIS_URL": rd.url(),
                "OPS_SERVICES": "external",
            }
            report_dir = Path(tmp) / "reports"
            started = time.perf_counter()
            gate = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "suites",
                    "-m",
                    "migration",
                    "-k",
                    "test_stairway",
                    "-q",
                    "-p",
                    "no:randomly",
                    "--alembic-ini",
                    str(ini),
                    "--report-dir",
                    str(report_dir),
                ],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
            ours_gate = time.perf_counter() - started
            gate_junit = (report_dir / "latest").resolve() / "junit.xml"
            gate_counts = junit_outcomes(gate_junit)
            assert gate.returncode == 0 and gate_counts["passed"] == args.revisions, gate.stdout[-2000:]
            ours_tests = junit_time(gate_junit, "test_stairway")

            # Theirs, same tree, same server, a fresh database.
            their_dir = Path(tmp) / "theirs"
            (their_dir / "tests").mkdir(parents=True)
            # pytest-alembic binds its built-in tests to tests/conftest.py by default.
            (their_dir / "tests" / "conftest.py").write_text(THEIR_CONFTEST)
            (their_dir / "pytest.ini").write_text("[pytest]\n")
            with pg.throwaway_database() as url:
                their_env = {
                    **os.environ,
                    "BENCH_ALEMBIC_INI": str(ini),
                    "BENCH_DATABASE_URL": migrations.runtime._url_for_sqlalchemy(url),
                    "PYTHONPATH": "",
                }
                started = time.perf_counter()
                theirs = subprocess.run(
                    [
                        str(their_python),
                        "-m",
                        "pytest",
                        "tests",
                        "--test-alembic",
                        "-k",
                        "test_up_down_consistency",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        "--junitxml",
                        str(their_dir / "junit.xml"),
                    ],
                    cwd=their_dir,
                    env=their_env,
                    capture_output=True,
                    text=True,
                    timeout=RUN_TIMEOUT_S,
                )
                theirs_wall = time.perf_counter() - started
            their_counts = junit_outcomes(their_dir / "junit.xml")
            assert theirs.returncode == 0 and their_counts["passed"] == 1, theirs.stdout[-2000:]
            theirs_test = junit_time(their_dir / "junit.xml", "test_up_down_consistency")
    finally:
        provider.stop()

    result = {
        "revisions": args.revisions,
        "server": f"PostgreSQL {pg.version} ({provider.name})",
        "ours_engine_s": round(ours_engine, 2),
        "ours_gate_wall_s": round(ours_gate, 2),
        "ours_gate_tests_s": round(ours_tests, 2),
        "theirs_wall_s": round(theirs_wall, 2),
        "theirs_test_s": round(theirs_test, 2),
        "ratio_wall": round(ours_gate / theirs_wall, 2),
        "ratio_tests": round(ours_tests / theirs_test, 2),
        "ratio_engine": round(ours_engine / theirs_test, 2),
    }
    print(json.dumps(result, indent=2))
    print(
        f"stairway over {args.revisions} revisions: "
        f"ours {ours_gate:.1f} s (gate wall) / {ours_tests:.1f} s (tests) "
        f"vs pytest-alembic {theirs_wall:.1f} s (wall) / {theirs_test:.1f} s (test): "
        f"ratio {result['ratio_tests']}x test time (goal <= 0.5: "
        f"{'met' if result['ratio_tests'] <= 0.5 else 'NOT met'}), {result['ratio_wall']}x wall"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
