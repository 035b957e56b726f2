"""Lint: squawk on each revision's offline SQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opsverify.migration.errors import MigrationError, labelled

# Rules that block writers, break running code or rewrite tables: these fail the gate by default.
DEFAULT_LINT_RULES: tuple[str, ...] = (
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "adding-required-field",
    "adding-not-nullable-field",
    "changing-column-type",
    "constraint-missing-not-valid",
    "adding-foreign-key-constraint",
    "renaming-column",
    "renaming-table",
    "ban-drop-column",
    "ban-drop-table",
    "disallowed-unique-constraint",
)
LINT_TIMEOUT_S = 60.0


_MARKER = re.compile(r"^-- Running upgrade (.*?) -> (.+)$", re.M)


_IGNORE_COMMENT = re.compile(r"^(--\s*squawk-ignore\b[^\n;]*);?[ \t]*\n\s*", re.M)


def _attach_squawk_ignores(body: str) -> str:
    """`op.execute("-- squawk-ignore RULE")` renders as its own `...;` line; squawk wants the
    comment directly above the statement it excuses, so drop the `;` and the blank lines."""
    return _IGNORE_COMMENT.sub(lambda m: m.group(1) + "\n", body)


def extract_revision_sql(script: str, rev: str) -> str:
    """One revision's part of an offline script, after the SET statements that open the script."""
    markers = list(_MARKER.finditer(script))
    preamble_end = markers[0].start() if markers else len(script)
    preamble = [s.strip() for s in script[:preamble_end].split(";\n") if s.strip().upper().startswith("SET ")]
    for i, marker in enumerate(markers):
        if rev in [p.strip() for p in marker.group(2).split(",")]:
            end = markers[i + 1].start() if i + 1 < len(markers) else len(script)
            body = script[marker.start() : end].rstrip()
            body = re.sub(r"\n\s*BEGIN;\s*$", "", body)
            head = "".join(f"{s};\n" for s in preamble)
            return f"{head}\nBEGIN;\n\n{_attach_squawk_ignores(body)}\n"
    raise MigrationError(f"offline SQL has no section for revision {rev}")


# Lint: squawk on each revision's offline SQL


@dataclass(frozen=True)
class LintFinding:
    revision: str
    rule: str
    statement: str
    message: str
    help: str
    line: int

    def describe(self) -> str:
        return labelled(
            f"{self.rule} in {self.revision}",
            ("Revision", self.revision),
            ("Rule", self.rule),
            ("Statement", self.statement),
            ("Problem", self.message),
            help=self.help,
        )


def squawk_binary() -> str:
    beside = Path(sys.executable).parent / "squawk"
    if beside.exists():
        return str(beside)
    found = shutil.which("squawk")
    if not found:
        raise MigrationError("squawk not found: pip install squawk-cli (it provides the `squawk` command)")
    return found


def _statement_at(text: str, line: int) -> str:
    """The whole statement that contains 0-based `line` (alembic ends statements with ';' + blank line)."""
    offset = sum(len(x) + 1 for x in text.split("\n")[:line])
    start = text.rfind(";", 0, offset) + 1
    end = text.find(";", offset)
    chunk = text[start : end + 1 if end >= 0 else len(text)]
    return " ".join(" ".join(x for x in chunk.splitlines() if not x.strip().startswith("--")).split())


def lint(
    revision_sql: dict[str, str],
    *,
    gating: Sequence[str] = DEFAULT_LINT_RULES,
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    pg_version: str | None = None,
) -> tuple[dict[str, list[LintFinding]], dict[str, list[LintFinding]]]:
    """Run squawk once over every revision's SQL. Returns (gating findings, other findings) per revision.

    squawk honours `-- squawk-ignore rule` comments itself; `exclude` rules are never reported.
    """
    gate = (set(gating) | set(include)) - set(exclude)
    found: dict[str, list[LintFinding]] = {rev: [] for rev in revision_sql}
    other: dict[str, list[LintFinding]] = {rev: [] for rev in revision_sql}
    if not revision_sql:
        return found, other
    with tempfile.TemporaryDirectory(prefix="opsverify-squawk-") as tmp:
        files: dict[str, str] = {}
        for i, (rev, text) in enumerate(revision_sql.items()):
            path = Path(tmp) / f"{i:04d}_{re.sub(r'[^A-Za-z0-9_]', '_', rev)}.sql"
            path.write_text(text, encoding="utf-8")
            files[path.name] = rev
        argv = [squawk_binary(), "--reporter", "json", "--no-error-on-unmatched-pattern"]
        if pg_version:
            argv += ["--pg-version", pg_version]
        if exclude:
            argv += ["--exclude", ",".join(exclude)]
        if include:
            argv += ["--include", ",".join(include)]
        argv += sorted(str(Path(tmp) / name) for name in files)
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, cwd=tmp, stdin=subprocess.DEVNULL
        )
        try:
            results = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            raise MigrationError(
                labelled(
                    "squawk did not produce JSON",
                    ("Exit code", proc.returncode),
                    ("Output", (proc.stderr or proc.stdout)[-800:]),
                )
            ) from None
    for item in results:
        owner = files.get(Path(str(item.get("file", ""))).name)
        if owner is None:
            continue
        text = revision_sql[owner]
        finding = LintFinding(
            revision=owner,
            rule=str(item.get("rule_name", "?")),
            statement=_statement_at(text, int(item.get("line", 0))),
            message=str(item.get("message", "")),
            help=str(item.get("help") or ""),
            line=int(item.get("line", 0)) + 1,
        )
        (found if finding.rule in gate else other)[owner].append(finding)
    return found, other
