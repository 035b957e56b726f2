"""Configure, collect, run and finish: the hooks that guard mutations and write the report."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from opsverify import __version__, cleanup
from opsverify.config import REPO_ROOT
from opsverify.errors import OpsError
from opsverify.plugin.options import GATE_TIMEOUTS_S, MARKERS, _build_session, _is_gate_run, _run_id
from opsverify.plugin.state import ATTENTION_PROP, ENV_PROP, EXTRA_HTML_PROP, FIGURE_PROP, OPS_KEY, STATE_KEY
from opsverify.redact import redact, redact_tree
from opsverify.report import (
    RunRecord,
    append_history,
    figure_from_json,
    point_latest,
    read_history,
    standalone_html,
    summary_sections,
    write_json,
)

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
    target = config.option.target or os.environ.get("OPS_TARGET") or "reference"
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
