"""The run's verdict and its files: summary.json, history.jsonl and the report's own sections.

pytest-html renders the per-test table; this module computes the go / no-go on top of it
(OK / ATTENTION / FAIL), the per-gate counts and wall times, the measured figures against their
budgets, and the trend charts. It is plain Python: the plugin feeds it test outcomes.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsverify.redact import redact

GATES = ("smoke", "integration", "migration", "dr", "perf")
RESULT_COLOURS = {"OK": "#1a7f37", "ATTENTION": "#9a6700", "FAIL": "#cf222e"}
HISTORY_KEEP = 30


@dataclass
class GateStats:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def wall_s(self) -> float:
        if self.started is None or self.finished is None:
            return 0.0
        return max(0.0, self.finished - self.started)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "skipped": self.skipped, "wall_s": round(self.wall_s, 3)}


@dataclass(frozen=True)
class Figure:
    """A measured number with the budget it is held to (None: informational)."""

    name: str
    value: float
    unit: str = ""
    budget: float | None = None
    # Above this share of the budget the run is ATTENTION even though the check passed.
    warn_ratio: float | None = None
    higher_is_better: bool = False

    @property
    def within_budget(self) -> bool | None:
        if self.budget is None:
            return None
        return self.value >= self.budget if self.higher_is_better else self.value <= self.budget

    @property
    def needs_attention(self) -> bool:
        if self.budget is None or self.warn_ratio is None or self.higher_is_better:
            return False
        return self.value > self.warn_ratio * self.budget


@dataclass
class RunRecord:
    """Everything the verdict is computed from; filled by the plugin as reports arrive."""

    run_id: str
    target: str
    base_url: str = ""
    provider: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    gates: dict[str, GateStats] = field(default_factory=lambda: {g: GateStats() for g in GATES})
    other: GateStats = field(default_factory=GateStats)
    figures: dict[str, Figure] = field(default_factory=dict)
    attention: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # One outcome per test, however many gate markers it carries.
    outcomes: dict[str, str] = field(default_factory=dict)
    usage_error: str | None = None
    interrupted: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    exit_status: int | None = None

    def add_outcome(self, keywords: Iterable[str], outcome: str, start: float, stop: float, nodeid: str) -> None:
        names = set(keywords)
        gates: list[str | None] = [g for g in GATES if g in names] or [None]
        for gate in gates:
            stats = self.gates[gate] if gate else self.other
            if outcome == "passed":
                stats.passed += 1
            elif outcome == "failed":
                stats.failed += 1
            else:
                stats.skipped += 1
            stats.started = start if stats.started is None else min(stats.started, start)
            stats.finished = stop if stats.finished is None else max(stats.finished, stop)
        self.outcomes[nodeid] = outcome
        if outcome == "failed":
            self.failures.append(nodeid)

    def add_figure(self, figure: Figure) -> None:
        self.figures[figure.name] = figure

    @property
    def counts(self) -> dict[str, int]:
        # A test carrying two gate markers (migration + perf) is counted in both gates but once here.
        values = list(self.outcomes.values())
        return {
            "passed": values.count("passed"),
            "failed": len(self.failures),
            "skipped": values.count("skipped"),
        }

    @property
    def result(self) -> str:
        if self.usage_error or self.failures or self.interrupted or self.exit_status not in (None, 0, 5):
            return "FAIL"
        if any(f.within_budget is False for f in self.figures.values()):
            return "FAIL"
        if self.attention or any(f.needs_attention for f in self.figures.values()):
            return "ATTENTION"
        return "OK"

    @property
    def attention_reasons(self) -> list[str]:
        reasons = list(self.attention)
        for f in self.figures.values():
            if f.needs_attention and f.budget is not None:
                reasons.append(
                    f"{f.name} {f.value:g}{f.unit} is above {f.warn_ratio:.0%} of its budget {f.budget:g}{f.unit}"
                )
        return reasons

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def summary(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "target": self.target,
            "base_url": self.base_url,
            "provider": self.provider,
            "run_id": self.run_id,
            "started_at": dt.datetime.fromtimestamp(self.started_at, dt.UTC).isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
            "gates": {g: s.as_dict() for g, s in self.gates.items()},
            "figures": {name: f.value for name, f in self.figures.items()},
            "budgets": {name: f.budget for name, f in self.figures.items() if f.budget is not None},
            "attention": self.attention_reasons,
            "failures": self.failures,
            "usage_error": self.usage_error,
            "environment": self.environment,
        }

    def history_line(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "target": self.target,
            "result": self.result,
            "started_at": self.summary()["started_at"],
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
            "figures": {name: f.value for name, f in self.figures.items()},
        }


def figure_from_json(text: str) -> Figure:
    return Figure(**json.loads(text))


# ---------------------------------------------------------------------------------------------
# Files


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(redact(json.dumps(data, indent=2, sort_keys=False, default=str)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def append_history(history: Path, record: RunRecord) -> None:
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as fh:
        fh.write(redact(json.dumps(record.history_line(), default=str)) + "\n")


def read_history(history: Path, target: str, limit: int = HISTORY_KEEP) -> list[dict[str, Any]]:
    if not history.is_file():
        return []
    rows = []
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("target") == target:
            rows.append(row)
    return rows[-limit:]


def point_latest(report_root: Path, run_dir: Path) -> None:
    """reports/latest -> reports/<run-id>, replaced atomically."""
    latest = report_root / "latest"
    tmp = report_root / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:
        # A filesystem without symlinks: leave a pointer file instead.
        if latest.is_symlink():
            latest.unlink()
        if not latest.exists():
            latest.mkdir()
        (latest / "RUN").write_text(run_dir.name + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# HTML sections (inserted into pytest-html's summary; everything inline, no external assets)


def _e(value: object) -> str:
    return html.escape(redact(str(value)))


def header_html(record: RunRecord) -> str:
    result = record.result
    colour = RESULT_COLOURS[result]
    counts = record.counts
    reasons = "".join(f"<li>{_e(r)}</li>" for r in record.attention_reasons)
    usage = f"<p class='ops-usage'><b>Usage error:</b> {_e(record.usage_error)}</p>" if record.usage_error else ""
    return (
        "<section id='ops-header'>"
        f"<h2 id='ops-result' data-result='{result}' style='color:{colour}'>RESULT: {result}</h2>"
        "<table id='ops-run'><tbody>"
        f"<tr><th>Target</th><td id='ops-target'>{_e(record.target)}</td></tr>"
        f"<tr><th>Base URL</th><td>{_e(record.base_url or '-')}</td></tr>"
        f"<tr><th>Provider</th><td>{_e(record.provider or '-')}</td></tr>"
        f"<tr><th>Wall-clock duration</th><td id='ops-duration'>{record.duration_s:.1f} s</td></tr>"
        f"<tr><th>Tests</th><td id='ops-counts' data-passed='{counts['passed']}' data-failed='{counts['failed']}' "
        f"data-skipped='{counts['skipped']}'>{counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped</td></tr>"
        "</tbody></table>"
        f"{usage}"
        f"{'<ul id=ops-attention>' + reasons + '</ul>' if reasons else ''}"
        "</section>"
    )


def gates_html(record: RunRecord) -> str:
    rows = []
    for gate, stats in record.gates.items():
        status = "✖" if stats.failed else ("✔" if stats.passed else "–")
        rows.append(
            f"<tr data-gate='{gate}'><td>{gate}</td><td>{status}</td><td class='passed'>{stats.passed}</td>"
            f"<td class='failed'>{stats.failed}</td><td class='skipped'>{stats.skipped}</td>"
            f"<td>{stats.wall_s:.1f} s</td></tr>"
        )
    return (
        "<h2>Gates</h2><table id='ops-gates' class='ops-table'><thead><tr><th>Gate</th><th></th><th>Passed</th>"
        "<th>Failed</th><th>Skipped</th><th>Wall time</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _num(value: float) -> str:
    """Readable at a glance: 3,405,130 rather than 3.40513e+06."""
    if abs(value) >= 100_000:
        return f"{value:,.0f}"
    return f"{value:g}"


def figures_html(record: RunRecord) -> str:
    if not record.figures:
        return ""
    rows = []
    for f in record.figures.values():
        verdict = {True: "✔", False: "✖", None: ""}[f.within_budget]
        if f.needs_attention:
            verdict = "⚠"
        op = "≥" if f.higher_is_better else "≤"
        budget = f"{op} {_num(f.budget)} {f.unit}" if f.budget is not None else "-"
        rows.append(
            f"<tr data-figure='{_e(f.name)}'><td>{_e(f.name)}</td><td>{_num(f.value)} {_e(f.unit)}</td>"
            f"<td>{_e(budget)}</td><td>{verdict}</td></tr>"
        )
    return (
        "<h2>Figures</h2><table id='ops-figures' class='ops-table'><thead><tr><th>Figure</th><th>Measured</th>"
        "<th>Budget</th><th></th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def environment_html(record: RunRecord) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in sorted(record.environment.items()))
    return f"<h2>Run environment</h2><table id='ops-environment' class='ops-table'><tbody>{rows}</tbody></table>"


def sparkline_svg(title: str, values: list[float], unit: str, width: int = 320, height: int = 80) -> str:
    """A small inline SVG line chart; empty when there is nothing to draw."""
    points = [v for v in values if v is not None]
    if len(points) < 1:
        return ""
    lo, hi = min(points), max(points)
    span = (hi - lo) or 1.0
    step = (width - 20) / max(1, len(points) - 1)
    coords = " ".join(
        f"{10 + i * step:.1f},{height - 15 - (v - lo) / span * (height - 30):.1f}" for i, v in enumerate(points)
    )
    return (
        f"<figure class='ops-trend'><figcaption>{_e(title)} (last {len(points)} runs; "
        f"min {lo:g} {unit}, max {hi:g} {unit})</figcaption>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{_e(title)}'><rect width='100%' height='100%' fill='#f6f8fa'/>"
        f"<polyline fill='none' stroke='#0969da' stroke-width='2' points='{coords}'/></svg></figure>"
    )


def trends_html(history: list[dict[str, Any]]) -> str:
    if not history:
        return ""
    charts = [sparkline_svg("Duration", [h.get("duration_s", 0.0) for h in history], "s")]
    for key, title, unit in (("p95_ms", "p95", "ms"), ("rto_s", "RTO", "s")):
        values = [h["figures"][key] for h in history if key in h.get("figures", {})]
        if values:
            charts.append(sparkline_svg(title, values, unit))
    return "<h2>Trends</h2><div id='ops-trends'>" + "".join(c for c in charts if c) + "</div>"


STYLE = (
    "<style>#ops-header h2{font-size:1.6em;margin:.3em 0}.ops-table{border-collapse:collapse;margin:.5em 0}"
    ".ops-table td,.ops-table th,#ops-run td,#ops-run th{border:1px solid #d0d7de;padding:2px 8px;text-align:left}"
    ".ops-trend{display:inline-block;margin:0 1em 1em 0}</style>"
)


def summary_sections(record: RunRecord, history: list[dict[str, Any]], extra: Iterable[str] = ()) -> list[str]:
    return [
        STYLE,
        header_html(record),
        gates_html(record),
        figures_html(record),
        *extra,
        trends_html(history),
        environment_html(record),
    ]


def standalone_html(record: RunRecord, history: list[dict[str, Any]]) -> str:
    """The report when pytest-html never ran (a usage error before the session started)."""
    body = "".join(summary_sections(record, history))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>opsverify report</title></head>"
        f"<body><h1>opsverify report</h1>{body}</body></html>"
    )
