"""report.html and summary.json tell the truth: parsed with an HTML parser, compared to the run."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from opsverify.report import Figure, RunRecord


class _ReportParser(HTMLParser):
    """Collects elements by id and the gate table's rows (data-gate attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.text_by_id: dict[str, str] = {}
        self.gates: dict[str, list[str]] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._gate: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        element_id = attributes.get("id")
        if element_id:
            self.by_id[element_id] = attributes
            self.text_by_id.setdefault(element_id, "")
        if tag == "tr" and "data-gate" in attributes:
            self._gate = attributes["data-gate"]
            self.gates[self._gate] = []
        self._stack.append((tag, element_id))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._gate = None
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._stack:
            if element_id:
                self.text_by_id[element_id] += data
        if self._gate is not None and data.strip():
            self.gates[self._gate].append(data.strip())


def parse_report(path: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_healthy_run_report_says_ok_with_matching_counts(gates) -> None:
    run = gates("-m", "smoke", "-k", "endpoint or ready")
    run.assert_all_passed()
    report = parse_report(run.run_dir / "report.html")
    assert report.by_id["ops-result"]["data-result"] == "OK"
    counts = report.by_id["ops-counts"]
    assert int(counts["data-passed"]) == len(run.passed) == run.summary["counts"]["passed"]
    assert int(counts["data-failed"]) == 0
    assert report.gates["smoke"][:4] == ["smoke", "✔", str(len(run.passed)), "0"]
    assert report.text_by_id["ops-target"] == "reference"
    # Self-contained: no stylesheet or script is fetched from elsewhere.
    html = (run.run_dir / "report.html").read_text()
    assert 'src="http' not in html and '<link rel="stylesheet" href="http' not in html
    assert run.stdout.rstrip().splitlines()[-1].startswith("RESULT: OK — ")


def test_faulty_run_report_says_fail_and_history_grows(gates) -> None:
    healthy = gates("-m", "smoke", "-k", "endpoint")
    faulty = gates("-m", "smoke", "-k", "endpoint", faults="ready=503")
    report = parse_report(faulty.run_dir / "report.html")
    assert report.by_id["ops-result"]["data-result"] == "FAIL"
    assert int(report.by_id["ops-counts"]["data-failed"]) == len(faulty.failed) > 0
    assert faulty.summary["result"] == "FAIL"
    assert faulty.summary["gates"]["smoke"]["failed"] == len(faulty.failed)
    last_line = faulty.stdout.rstrip().splitlines()[-1]
    assert last_line.startswith("RESULT: FAIL — ") and last_line.endswith("report.html")
    # Each gate run writes its own history; both runs appended exactly one line.
    for run in (healthy, faulty):
        lines = (run.report_dir / "history.jsonl").read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["run_id"] == run.summary["run_id"]


def test_history_gets_one_line_per_run(tmp_path: Path, external_env) -> None:
    from tests.gaterun import run_gates

    for expected in (1, 2):
        run_gates("-m", "smoke", "-k", "ready", report_dir=tmp_path, env=external_env)
        assert len((tmp_path / "history.jsonl").read_text().splitlines()) == expected
    report = parse_report((tmp_path / "latest" / "report.html").resolve())
    assert "ops-trends" in report.by_id


def test_xdist_summary_equals_serial(gates) -> None:
    serial = gates("-m", "smoke", "-k", "endpoint or ready")
    parallel = gates("-m", "smoke", "-k", "endpoint or ready", "-n", "2")
    serial.assert_all_passed()
    parallel.assert_all_passed()
    assert parallel.summary["counts"] == serial.summary["counts"]
    assert parallel.summary["gates"]["smoke"]["passed"] == serial.summary["gates"]["smoke"]["passed"]
    assert parallel.summary["provider"] == "external"
    # Wall time, not the sum of per-test durations.
    assert parallel.summary["duration_s"] > 0


def test_result_rules() -> None:
    record = RunRecord(run_id="r", target="t")
    assert record.result == "OK"
    record.add_figure(Figure("rto_s", 25.0, "s", budget=30.0, warn_ratio=0.8))
    assert record.result == "ATTENTION"
    record.add_figure(Figure("rto_s", 31.0, "s", budget=30.0, warn_ratio=0.8))
    assert record.result == "FAIL"
    record = RunRecord(run_id="r", target="t")
    record.add_outcome(["smoke"], "failed", 0.0, 1.0, "suites/smoke/test_x.py::test_y")
    assert record.result == "FAIL"
    assert record.summary()["gates"]["smoke"]["failed"] == 1


def test_a_test_in_two_gates_counts_once_in_the_totals() -> None:
    record = RunRecord(run_id="r", target="t")
    record.add_outcome(["migration", "perf"], "passed", 0.0, 2.0, "suites/migration/test_online.py::test_x")
    record.add_outcome(["smoke"], "skipped", 0.0, 1.0, "suites/smoke/test_tls.py::test_y")
    assert record.counts == {"passed": 1, "failed": 0, "skipped": 1}
    assert record.gates["migration"].passed == record.gates["perf"].passed == 1
