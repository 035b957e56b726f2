"""The pytest plugin: options, markers, the mutation guard and the report on every run.

The only module of the engine that imports pytest. Everything it decides is computed by plain
modules (config, report, redact); this file wires them to pytest's hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from opsverify import __version__, cleanup
from opsverify.config import REPO_ROOT, Profile, load_profile
from opsverify.errors import OpsError, UsageError
from opsverify.redact import redact, redact_tree, register_secret
from opsverify.report import (
    Figure,
    RunRecord,
    append_history,
    figure_from_json,
    point_latest,
    read_history,
    standalone_html,
    summary_sections,
    write_json,
)
from opsverify.services import choose_provider

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
FIGURE_PROP = "ops_figure"
ATTENTION_PROP = "ops_attention"
EXTRA_HTML_PROP = "ops_summary_html"
ENV_PROP = "ops_environment"


@dataclass
class OpsSession:
    """What one run is about: the profile, the options, where its report goes."""

    profile: Profile
    services: str
    base_url_override: str | None
    allow_mutations: bool
    allow_protected: bool
    allow_ready_degraded: bool
    expect_mode: str
    report_root: Path
    run_dir: Path
    alembic_ini: Path | None
    backup_dir: Path | None
    dr_rows: int
    perf_users: int | None
    perf_duration: float | None
    perf_spawn_rate: float | None
    perf_processes: int | None
    record: RunRecord
    extra_summary_html: list[str] = field(default_factory=list)

    @property
    def owns_target(self) -> bool:
        """The suite started the target itself (the reference service), so it may write to it."""
        return self.profile.reference_service and self.base_url_override is None

    @property
    def migration_ini(self) -> Path | None:
        """The migration tree's alembic.ini: --alembic-ini wins over migrations.alembic_ini."""
        if self.alembic_ini is not None:
            return self.alembic_ini
        configured = self.profile.migrations.alembic_ini
        return self.profile.relative_path(configured) if configured else None

    def mutation_refusal(self, *, dr: bool = False) -> str | None:
        """Why a writing (or restoring) test must not run here; None when it may."""
        what = "dr" if dr else "mutating"
        if self.owns_target:
            return None
        if self.profile.protected and not self.allow_protected:
            return (
                f"{what} test refused: target '{self.profile.name}' is protected "
                f"(pass --allow-protected together with --allow-mutations to override)"
            )
        if not dr and not self.allow_mutations:
            return (
                f"{what} test skipped: target '{self.profile.name}' is not owned by the suite (pass --allow-mutations)"
            )
        return None


OPS_KEY = pytest.StashKey[OpsSession]()
STATE_KEY = pytest.StashKey[dict[str, Any]]()


def get_session(config: pytest.Config) -> OpsSession:
    session = config.stash.get(OPS_KEY, None)
    if session is None:
        raise pytest.UsageError("opsverify: gates run from the repository root: pytest suites/ (or make verify)")
    return session


# ---------------------------------------------------------------------------------------------
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
    target = opt.target or os.environ.get("OPS_TARGET") or "sample"
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


# ---------------------------------------------------------------------------------------------
# Configure / report


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    cleanup.install()
    if not _is_gate_run(config):
        return
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["ops_run_id"] if workerinput else None
    target = config.option.target or os.environ.get("OPS_TARGET") or "sample"
    run_id = run_id or _run_id(target)
    try:
        session = _build_session(config, run_id)
    except OpsError as exc:
        if workerinput is None:
            _write_usage_error_report(config, run_id, target, str(exc))
        raise pytest.UsageError(redact(str(exc))) from None
    config.stash[OPS_KEY] = session
    # --collect-only lists the checks; it is not a run, so it leaves no report or history line.
    config.stash[STATE_KEY] = {"tests": {}, "written": bool(config.option.collectonly)}
    if workerinput is None and not config.option.collectonly:
        session.run_dir.mkdir(parents=True, exist_ok=True)
        if not config.option.htmlpath:
            config.option.htmlpath = str(session.run_dir / "report.html")
        config.option.self_contained_html = True
        if not config.option.xmlpath:
            config.option.xmlpath = str(session.run_dir / "junit.xml")
        session.record.environment.update(_static_environment())


def _write_usage_error_report(config: pytest.Config, run_id: str, target: str, message: str) -> None:
    opt = config.option
    report_root = Path(opt.report_dir or os.environ.get("OPS_REPORT_DIR") or REPO_ROOT / "reports").resolve()
    run_dir = report_root / run_id
    now = time.time()
    record = RunRecord(run_id=run_id, target=target, started_at=now, finished_at=now, usage_error=message)
    record.environment.update(_static_environment())
    with contextlib.suppress(OSError):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "summary.json", record.summary())
        (run_dir / "report.html").write_text(redact(standalone_html(record, [])), encoding="utf-8")
        append_history(report_root / "history.jsonl", record)
        point_latest(report_root, run_dir)


def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes into the controller's run directory."""
    session = node.config.stash.get(OPS_KEY, None)
    if session is not None:
        node.workerinput["ops_run_id"] = session.record.run_id


def _static_environment() -> dict[str, str]:
    env = {
        "opsverify": __version__,
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "platform": platform.platform(terse=True),
    }
    with contextlib.suppress(Exception):
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if sha:
            env["git_sha"] = sha
    for module in ("alembic", "locust", "httpx", "psycopg", "redis", "testcontainers", "sqlalchemy"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            env[module] = version(module)
    for var in ("OPS_POSTGRES_IMAGE", "OPS_REDIS_IMAGE"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    return env


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash.get(OPS_KEY, None)
    if session is None:
        return []
    where = session.base_url_override or session.profile.base_url or "reference service (started by the suite)"
    return [
        f"opsverify: target {session.profile.name} -> {where}; services {session.services}; report {session.run_dir}"
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        budgets = [s for gate, s in GATE_TIMEOUTS_S.items() if item.get_closest_marker(gate) is not None]
        if budgets:
            item.add_marker(pytest.mark.timeout(max(budgets)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    session = item.config.stash.get(OPS_KEY, None)
    if session is None:
        return
    if item.get_closest_marker("mutating") is not None:
        reason = session.mutation_refusal()
        if reason:
            pytest.skip(reason)
    # Newest-backup mode only reads backup files and restores into throwaway databases, so it may
    # run against a protected profile; fresh mode dumps the live database and needs the flag.
    newest_backup_mode = session.backup_dir is not None or bool(session.profile.backup.dir)
    if item.get_closest_marker("dr") is not None and not newest_backup_mode:
        reason = session.mutation_refusal(dr=True)
        if reason:
            pytest.skip(reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or getattr(config, "workerinput", None) is not None:
        return
    session = config.stash.get(OPS_KEY, None)
    if session is None:
        return
    state = config.stash[STATE_KEY]["tests"]
    entry = state.setdefault(report.nodeid, {"outcome": "passed", "start": report.start, "stop": report.stop})
    entry["start"] = min(entry["start"], report.start)
    entry["stop"] = max(entry["stop"], report.stop)
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"
    for name, raw in report.user_properties:
        value = str(raw)
        if name == FIGURE_PROP:
            session.record.add_figure(figure_from_json(value))
        elif name == ATTENTION_PROP and value not in session.record.attention:
            session.record.attention.append(value)
        elif name == EXTRA_HTML_PROP and value not in session.extra_summary_html:
            session.extra_summary_html.append(value)
        elif name == ENV_PROP:
            session.record.environment.update(json.loads(value))
            session.record.provider = session.record.environment.get("provider", session.record.provider)
            session.record.base_url = session.record.base_url or session.record.environment.get("base_url", "")
    if report.when == "teardown":
        session.record.add_outcome(report.keywords, entry["outcome"], entry["start"], entry["stop"], report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    config = _CONFIG.get("config")
    session = config.stash.get(OPS_KEY, None) if config else None
    if session is not None and report.failed:
        session.record.failures.append(f"collection error: {report.nodeid}")


_CONFIG: dict[str, pytest.Config] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG["config"] = session.config


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ops = session.config.stash.get(OPS_KEY, None)
    if ops is None or getattr(session.config, "workerinput", None) is not None:
        return
    ops.record.finished_at = time.time()
    ops.record.exit_status = int(exitstatus)
    ops.record.interrupted = int(exitstatus) == int(pytest.ExitCode.INTERRUPTED)


def pytest_html_report_title(report: Any) -> None:
    config = _CONFIG.get("config")
    ops = config.stash.get(OPS_KEY, None) if config else None
    report.title = f"opsverify — {ops.profile.name if ops else 'report'}"


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    ops = session.config.stash.get(OPS_KEY, None)
    if ops is None:
        return
    history = read_history(ops.report_root / "history.jsonl", ops.record.target)
    prefix.extend(
        redact(s) for s in summary_sections(ops.record, [*history, ops.record.history_line()], ops.extra_summary_html)
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    ops = config.stash.get(OPS_KEY, None)
    if ops is None or getattr(config, "workerinput", None) is not None:
        return
    state = config.stash[STATE_KEY]
    if state["written"]:
        return
    state["written"] = True
    record = ops.record
    if not record.finished_at:
        record.finished_at = time.time()
    write_json(ops.run_dir / "summary.json", record.summary())
    append_history(ops.report_root / "history.jsonl", record)
    if not (ops.run_dir / "report.html").exists():
        history = read_history(ops.report_root / "history.jsonl", record.target)
        (ops.run_dir / "report.html").write_text(redact(standalone_html(record, history)), encoding="utf-8")
    redact_tree(ops.run_dir)
    point_latest(ops.report_root, ops.run_dir)
    counts = record.counts
    line = (
        f"RESULT: {record.result} — {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        f" — {_display(ops.run_dir / 'report.html')}"
    )
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if record.exit_status == int(pytest.ExitCode.NO_TESTS_COLLECTED):
        hint = "nothing selected: choose gates with -m (smoke, integration, migration, dr, perf) or widen -k"
        if reporter is not None:
            reporter.write_line(hint, yellow=True)
        else:
            print(hint)
    if reporter is not None:
        reporter.write_line(line, bold=True, **{_COLOUR[record.result]: True})
    else:
        print(line)


_COLOUR = {"OK": "green", "ATTENTION": "yellow", "FAIL": "red"}


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.relative_to(Path.cwd()).as_posix()
    return str(path)


# ---------------------------------------------------------------------------------------------
# Fixtures every gate shares: the session, figures and report extras.


@pytest.fixture(scope="session")
def ops(pytestconfig: pytest.Config) -> OpsSession:
    """The run: profile, options, report directory."""
    return get_session(pytestconfig)


@pytest.fixture(scope="session")
def profile(ops: OpsSession) -> Profile:
    return ops.profile


class FigureRecorder:
    """Lets a check put a measured number (and its budget) into summary.json and the report."""

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def record(
        self,
        name: str,
        value: float,
        *,
        unit: str = "",
        budget: float | None = None,
        warn_ratio: float | None = None,
        higher_is_better: bool = False,
    ) -> Figure:
        figure = Figure(name, float(value), unit, budget, warn_ratio, higher_is_better)
        self._node.user_properties.append((FIGURE_PROP, json.dumps(dataclasses.asdict(figure))))
        return figure

    def attention(self, reason: str) -> None:
        """The check passed, but an operator should look (result ATTENTION, not FAIL)."""
        self._node.user_properties.append((ATTENTION_PROP, redact(reason)))

    def summary_html(self, fragment: str) -> None:
        """A section for the report's summary (e.g. the locust chart); must be self-contained HTML."""
        self._node.user_properties.append((EXTRA_HTML_PROP, redact(fragment)))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> FigureRecorder:
    return FigureRecorder(request.node)


@pytest.fixture
def report_extra(request: pytest.FixtureRequest, pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """Attach text/HTML to this test's row in report.html (redacted)."""
    extras = pytestconfig.pluginmanager.getplugin("html")
    added: list[dict[str, Any]] = []

    class _Extra:
        def text(self, name: str, content: str) -> None:
            added.append(
                {
                    "name": name,
                    "format_type": "text",
                    "content": redact(content),
                    "mime_type": "text/plain",
                    "extension": "txt",
                }
            )

        def html(self, content: str) -> None:
            added.append(
                {
                    "name": "html",
                    "format_type": "html",
                    "content": redact(content),
                    "mime_type": None,
                    "extension": None,
                }
            )

    yield _Extra()
    if extras is not None or added:
        request.node.stash[_EXTRAS_KEY] = added


_EXTRAS_KEY = pytest.StashKey[list[dict[str, Any]]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    added = item.stash.get(_EXTRAS_KEY, None)
    if added and report.when == "teardown":
        report.extras = [*getattr(report, "extras", []), *added]
    if report.longrepr is not None and (report.failed or report.skipped):
        # Failure messages go into report.html and junit.xml; neither may carry a secret.
        with contextlib.suppress(Exception):
            text = str(report.longrepr)
            cleaned = redact(text)
            if cleaned != text:
                report.longrepr = RedactedRepr(cleaned, _redacted_crash(getattr(report.longrepr, "reprcrash", None)))


@dataclasses.dataclass
class RedactedRepr:
    """A failure representation with secrets masked that keeps the one-line crash message for JUnit."""

    text: str
    reprcrash: Any = None

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def _redacted_crash(crash: Any) -> Any:
    if crash is None:
        return None
    with contextlib.suppress(Exception):
        return dataclasses.replace(crash, message=redact(crash.message))
    return None
