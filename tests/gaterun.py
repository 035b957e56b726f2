"""Run the gates as a user would (a pytest subprocess) and read back what they reported.

Self-tests prove each gate fails on its fault by running `pytest suites ...` for real against
the reference service, then reading junit.xml and summary.json — the same files a CI job reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class GateRun:
    returncode: int
    stdout: str
    report_dir: Path
    # nodeid-ish "suites/smoke/test_x.py::test_y[param]" -> passed | failed | skipped
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return (self.report_dir / "latest").resolve()

    @property
    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    def ids(self, outcome: str) -> list[str]:
        return sorted(k for k, v in self.outcomes.items() if v == outcome)

    @property
    def failed(self) -> list[str]:
        return self.ids("failed")

    @property
    def passed(self) -> list[str]:
        return self.ids("passed")

    @property
    def skipped(self) -> list[str]:
        return self.ids("skipped")

    def message(self, fragment: str) -> str:
        """The failure/skip message of the one test whose id contains `fragment`."""
        hits = [k for k in self.messages if fragment in k]
        assert hits, f"no test matching {fragment!r} has a message; outcomes: {self.outcomes}"
        return self.messages[hits[0]]

    def assert_only_failed(self, *fragments: str) -> None:
        """Exactly the tests matching `fragments` failed: each fragment matches ≥ 1 failure, nothing else failed."""
        unexpected = [t for t in self.failed if not any(f in t for f in fragments)]
        missing = [f for f in fragments if not any(f in t for t in self.failed)]
        assert not unexpected and not missing, (
            f"expected failures {list(fragments)}; missing {missing}; unexpected {unexpected}\n"
            f"messages: {json.dumps({k: self.messages.get(k, '')[:300] for k in self.failed}, indent=1)}\n"
            f"stdout tail:\n{self.stdout[-3000:]}"
        )

    def assert_all_passed(self) -> None:
        assert self.returncode == 0 and not self.failed, (
            f"rc={self.returncode} failed={self.failed}\n"
            f"messages: {json.dumps({k: self.messages.get(k, '')[:300] for k in self.failed}, indent=1)}\n"
            f"stdout tail:\n{self.stdout[-3000:]}"
        )


def parse_junit(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    if not path.is_file():
        return outcomes, messages
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        file_part = classname.replace(".", "/") + ".py"
        nodeid = f"{file_part}::{name}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                messages[nodeid] = (child.get("message") or "") + "\n" + (child.text or "")
            elif child.tag == "skipped" and outcome != "failed":
                outcome = "skipped"
                messages[nodeid] = child.get("message") or ""
        outcomes[nodeid] = outcome
    return outcomes, messages


def run_gates(
    *args: str,
    report_dir: Path,
    env: dict[str, str] | None = None,
    faults: str = "",
    timeout_s: float = 600,
    paths: tuple[str, ...] = ("suites",),
) -> GateRun:
    """`python -m pytest suites ARGS` in the repo with SAMPLE_FAULTS set; never raises on failures."""
    child_env = dict(os.environ)
    child_env.pop("PYTEST_XDIST_WORKER", None)
    child_env.pop("PYTEST_CURRENT_TEST", None)
    child_env["SAMPLE_FAULTS"] = faults
    child_env.update(env or {})
    cmd = [sys.executable, "-m", "pytest", *paths, "--report-dir", str(report_dir), "-p", "no:randomly", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except BaseException:
        # Interrupted or over time: let the gate run tear down what it started (SIGINT, like
        # Ctrl-C), and only kill it if it does not finish that within the grace period.
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    run = GateRun(proc.returncode, output, report_dir)
    latest = report_dir / "latest"
    if latest.exists():
        run.outcomes, run.messages = parse_junit(latest.resolve() / "junit.xml")
    return run
