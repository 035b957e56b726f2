"""Command-line options and the session they build (profile, provider, run directory)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from opsverify.config import REPO_ROOT, Profile, load_profile
from opsverify.errors import UsageError
from opsverify.redact import register_secret
from opsverify.report import (
    RunRecord,
)
from opsverify.services import choose_provider
from opsverify.session import OpsSession

MARKERS = {
    "smoke": "read-only checks that the service and its dependencies answer (GET/HEAD only)",
    "integration": "user flows against the running service",
    "migration": "alembic history safety on throwaway databases",
    "dr": "backup, verify, restore drill with measured RTO/RPO",
    "perf": "load and query benchmarks against thresholds",
    "mutating": "writes to the target; refused unless --allow-mutations (or the suite owns the target)",
}
SERVICE_MODES = ("auto", "containers", "local", "external")
# Per-gate test timeouts (pytest-timeout), applied unless a test sets its own @pytest.mark.timeout.
GATE_TIMEOUTS_S = {"smoke": 120, "integration": 180, "migration": 300, "dr": 900, "perf": 600}
EXPECT_MODES = ("normal", "maintenance", "read-only")


# Options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opsverify", "operational verification gates")
    group.addoption(
        "--target", default=None, help="target profile NAME (targets/NAME.toml) or PATH; env OPS_TARGET; default sample"
    )
    group.addoption("--base-url", default=None, help="check the service at this URL; start nothing")
    group.addoption(
        "--services",
        default=None,
        choices=SERVICE_MODES,
        help="where Postgres/Redis come from (default auto; env OPS_SERVICES)",
    )
    group.addoption(
        "--allow-mutations",
        action="store_true",
        default=False,
        help="run tests marked mutating (env OPS_ALLOW_MUTATIONS=1)",
    )
    group.addoption(
        "--allow-protected", action="store_true", default=False, help="allow mutating/dr tests on a protected profile"
    )
    group.addoption(
        "--allow-ready-degraded",
        action="store_true",
        default=False,
        help="accept 503 from readiness endpoints; liveness must stay 200",
    )
    group.addoption(
        "--expect-mode", default="normal", choices=EXPECT_MODES, help="the mode the target is expected to be in"
    )
    group.addoption("--report-dir", default=None, help="where reports/<run-id>/ goes (default reports/)")
    group.addoption("--alembic-ini", default=None, help="alembic.ini of the migration tree to check")
    group.addoption("--backup-dir", default=None, help="restore the newest backup found in DIR (DR newest-backup mode)")
    group.addoption("--dr-rows", type=int, default=200_000, help="rows seeded into the DR source database (fresh mode)")
    group.addoption("--perf-users", type=int, default=None, help="locust users (overrides perf.users)")
    group.addoption(
        "--perf-duration", type=float, default=None, help="load duration in seconds (overrides perf.duration_s)"
    )
    group.addoption(
        "--perf-spawn-rate", type=float, default=None, help="users started per second (overrides perf.spawn_rate)"
    )
    group.addoption("--perf-processes", type=int, default=None, help="locust worker processes (locust --processes N)")


def _is_gate_run(config: pytest.Config) -> bool:
    """Self-tests (`pytest tests/`) use the engine directly and produce no gate report."""
    tests_dir = (REPO_ROOT / "tests").resolve()
    args = [a for a in config.args if not a.startswith("-")]
    if not args:
        return True
    for arg in args:
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if not path.is_relative_to(tests_dir):
            return True
    return False


def _run_id(target: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() else "-" for c in target)
    return f"{stamp}-{safe}-{secrets.token_hex(2)}"


def _validate_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--base-url {value!r} is not a URL (expected http://host:port or https://host)")
    return value.rstrip("/")


def _build_session(config: pytest.Config, run_id: str) -> OpsSession:
    opt = config.option
    target = opt.target or os.environ.get("OPS_TARGET") or "reference"
    report_root = Path(opt.report_dir or os.environ.get("OPS_REPORT_DIR") or REPO_ROOT / "reports").resolve()
    record = RunRecord(run_id=run_id, target=target, started_at=time.time())
    profile = load_profile(target)
    base_url = _validate_url(opt.base_url) if opt.base_url else None
    services = opt.services or os.environ.get("OPS_SERVICES") or "auto"
    if services not in SERVICE_MODES:
        raise UsageError(f"OPS_SERVICES={services!r}: expected one of {', '.join(SERVICE_MODES)}")
    alembic_ini = Path(opt.alembic_ini).resolve() if opt.alembic_ini else None
    if alembic_ini is not None and not alembic_ini.is_file():
        raise UsageError(f"--alembic-ini {opt.alembic_ini}: no such file (point it at your project's alembic.ini)")
    backup_dir = Path(opt.backup_dir).resolve() if opt.backup_dir else None
    if backup_dir is not None and (not backup_dir.is_dir() or not any(backup_dir.iterdir())):
        raise UsageError(f"--backup-dir {opt.backup_dir}: no backups there (empty or missing directory)")
    if profile.reference_service and base_url is None:
        _ensure_reference_secrets(profile)
        profile = load_profile(target)
        # The suite must start servers for this target: say now, in one line, if it cannot.
        choose_provider(services).check()
    return OpsSession(
        profile=profile,
        services=services,
        base_url_override=base_url,
        allow_mutations=opt.allow_mutations or os.environ.get("OPS_ALLOW_MUTATIONS") == "1",
        allow_protected=opt.allow_protected,
        allow_ready_degraded=opt.allow_ready_degraded,
        expect_mode=opt.expect_mode,
        report_root=report_root,
        run_dir=report_root / run_id,
        alembic_ini=alembic_ini,
        backup_dir=backup_dir,
        dr_rows=opt.dr_rows,
        perf_users=opt.perf_users,
        perf_duration=opt.perf_duration,
        perf_spawn_rate=opt.perf_spawn_rate,
        perf_processes=opt.perf_processes,
        record=dataclasses.replace(record, base_url=base_url or profile.base_url or "", target=profile.name),
    )


def _ensure_reference_secrets(profile: Profile) -> None:
    """The suite hands the reference service the same secrets the profile reads.

    A value the suite makes up (metrics token, config-checked secrets like the JWT secret) goes
    into the environment, so the child service and xdist workers agree on it, and into the
    redactor, so it never reaches a report.
    """
    names = {profile.metrics.token} if profile.metrics.token else set()
    checked_envs = {check.env for check in profile.config_checks}
    names |= {name for name, ref in profile.secrets.items() if ref.env in checked_envs}
    for name in names:
        ref = profile.secrets[name]
        minimum = max([32, *(c.min_bytes for c in profile.config_checks if c.env == ref.env)])
        if not os.environ.get(ref.env):
            os.environ[ref.env] = secrets.token_urlsafe(minimum)
        register_secret(os.environ[ref.env])
