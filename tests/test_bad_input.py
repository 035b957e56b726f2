"""Bad input never produces a traceback: one line naming the fix, exit code 4, a report still written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gaterun import run_gates

DATA = Path(__file__).parent / "data"
PROFILES = DATA / "profiles"

CASES = [
    pytest.param(["--target", "no-such-target"], {}, "unknown target 'no-such-target'", id="unknown-target"),
    pytest.param(["--target", str(PROFILES / "malformed.toml")], {}, "malformed TOML", id="malformed-toml"),
    pytest.param(
        ["--target", str(PROFILES / "unknown_key.toml")], {}, "unknown key 'smoke.ready_timeout'", id="unknown-key"
    ),
    pytest.param(["--target", str(PROFILES / "wrong_type.toml")], {}, "expected number, got str", id="wrong-type"),
    pytest.param(
        ["--target", str(PROFILES / "missing_secret.toml")],
        {},
        "environment variable OPS_TEST_SURELY_UNSET_API_KEY is not set",
        id="missing-secret",
    ),
    pytest.param(["--base-url", "not-a-url"], {}, "--base-url 'not-a-url' is not a URL", id="bad-base-url"),
    pytest.param(
        ["--services", "containers"],
        {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        "no Docker engine answers",
        id="containers-without-engine",
    ),
    pytest.param(
        ["--services", "containers"],
        {"OPS_PG_TOOLS": "sideways"},
        "OPS_PG_TOOLS='sideways': expected auto or container",
        id="containers-bad-tools",
    ),
    pytest.param(
        ["--services", "local"], {"OPS_PG_BINDIR": "/nonexistent"}, "pg_ctl not found", id="local-no-binaries"
    ),
    pytest.param(
        ["--services", "external"],
        {"OPS_DATABASE_URL": "", "OPS_REDIS_URL": ""},
        "set OPS_DATABASE_URL and OPS_REDIS_URL",
        id="external-without-urls",
    ),
    pytest.param(
        ["--alembic-ini", "/nonexistent/alembic.ini"],
        {},
        "--alembic-ini /nonexistent/alembic.ini: no such file",
        id="alembic-ini-missing",
    ),
    pytest.param(["--backup-dir", "{empty}"], {}, "no backups there", id="backup-dir-empty"),
]


@pytest.mark.parametrize(("args", "env", "expected"), CASES)
def test_bad_input_is_one_line_and_exit_4(tmp_path: Path, args: list[str], env: dict[str, str], expected: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.replace("{empty}", str(empty)) for a in args]
    base_env = {"OPS_SERVICES": "", "OPS_TARGET": ""}
    run = run_gates(*args, "-m", "smoke", report_dir=tmp_path / "reports", env={**base_env, **env}, timeout_s=60)
    assert run.returncode == 4, f"rc={run.returncode}\n{run.stdout[-2000:]}"
    assert "Traceback" not in run.stdout
    errors = [line for line in run.stdout.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, run.stdout[-2000:]
    assert expected in errors[0], errors[0]
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    assert summary["result"] == "FAIL"
    assert expected in summary["usage_error"]
    assert (tmp_path / "reports" / "latest" / "report.html").is_file()
