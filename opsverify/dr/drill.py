"""The drill: each step runs once; a later step re-raises an earlier step's failure as its own.

A `DrillRun` owns one drill: each step runs once, its result (or its failure) is remembered, and a
later step that needs an earlier one re-raises that step's failure as a `StepError` naming it, so a
report says "backup step failed" instead of an unrelated traceback three steps later.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from opsverify.dr.archive import ArchiveReport, verify_archive
from opsverify.dr.backup import BackupArtifact, newest_backup, take_backup
from opsverify.dr.discovery import dir_listing
from opsverify.dr.errors import DrError, StepError
from opsverify.dr.integrity import (
    AmcheckResult,
    InvariantResult,
    check_invariants,
    known_revisions,
    list_tables,
    restored_revisions,
    run_amcheck,
)
from opsverify.dr.manifest import Manifest, diff_manifests, exported_snapshot, invalid_indexes, take_manifest
from opsverify.dr.restore import RestoreResult, restore_backup
from opsverify.dr.tools import PgClient
from opsverify.errors import OpsError

# The drill


T = TypeVar("T")


@dataclass
class DrillPlan:
    """What one drill does; built by the fixtures from the profile and the command line."""

    mode: str  # "fresh" | "newest"
    workdir: Path
    jobs: int = 2
    format: str = "custom"
    min_bytes: int = 1024
    backup_command: str | None = None
    restore_command: str | None = None
    backup_dir: Path | None = None
    timeout_s: float = 3600
    alembic_ini: Path | None = None
    invariants: list[str] = field(default_factory=list)
    freshness_query: str | None = None


@dataclass
class SmokeOutcome:
    base_url: str
    # Endpoint path -> failure reason; empty when every endpoint kept its promise.
    failures: dict[str, str]
    started_to_green_s: float
    exchanges: list[str]


class DrillRun:
    """One drill. Steps run once; a failed step's error is re-raised (as its own) to every later step."""

    def __init__(
        self,
        plan: DrillPlan,
        client: PgClient,
        *,
        source_url: Callable[[], str] | None,
        new_database: Callable[[], str],
        run_smoke: Callable[[str], SmokeOutcome] | None,
    ) -> None:
        self.plan = plan
        self.client = client
        self._source_url = source_url
        self._new_database = new_database
        self._run_smoke = run_smoke
        self._results: dict[str, Any] = {}
        self._errors: dict[str, StepError] = {}
        self._lock = threading.RLock()
        self.source_listing: list[tuple[str, int, float]] | None = None

    def _step(self, name: str, fn: Callable[[], T]) -> T:
        with self._lock:
            if name in self._results:
                return self._results[name]  # type: ignore[no-any-return]
            if name in self._errors:
                raise self._errors[name]
            try:
                value = fn()
            except StepError as exc:
                self._errors[name] = exc
                raise
            except (OpsError, psycopg.Error, OSError, subprocess.SubprocessError) as exc:
                error = StepError(name, str(exc) or type(exc).__name__)
                self._errors[name] = error
                raise error from None
            self._results[name] = value
            return value

    def failed(self, name: str) -> StepError | None:
        return self._errors.get(name)

    # -- source ---------------------------------------------------------------------------------
    def source(self) -> str:
        assert self._source_url is not None
        return self._step("source", self._source_url)

    def source_manifest(self) -> Manifest:
        """Fresh mode: the source as it was when the backup was taken (same snapshot as pg_dump)."""
        self.backup()
        return self._results["source_manifest"]  # type: ignore[no-any-return]

    # -- steps ----------------------------------------------------------------------------------
    def backup(self) -> BackupArtifact:
        def run() -> BackupArtifact:
            if self.plan.mode == "newest":
                assert self.plan.backup_dir is not None
                self.source_listing = dir_listing(self.plan.backup_dir)
                return newest_backup(self.plan.backup_dir)
            try:
                url = self.source()
            except StepError as exc:
                raise StepError("backup", f"could not prepare the source database: {exc.message}") from None
            if self.plan.backup_command:
                self._results["source_manifest"] = take_manifest(url, jobs=self.plan.jobs, label="source manifest")
                return take_backup(self.client, url, self.plan.workdir, command=self.plan.backup_command,
                                   timeout_s=self.plan.timeout_s)
            # The manifest is hashed while pg_dump runs, both in one exported snapshot: the same data,
            # and the fingerprint's cost mostly hides behind pg_dump's compression.
            with exported_snapshot(url) as snapshot, \
                    concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="source-manifest") as ex:
                manifest = ex.submit(
                    take_manifest, url, jobs=self.plan.jobs, snapshot=snapshot, label="source manifest"
                )
                artifact = take_backup(self.client, url, self.plan.workdir, fmt=self.plan.format, jobs=self.plan.jobs,
                                       timeout_s=self.plan.timeout_s, snapshot=snapshot)
                self._results["source_manifest"] = manifest.result()
                return artifact

        return self._step("backup", run)

    def archive(self) -> ArchiveReport:
        def run() -> ArchiveReport:
            artifact = self._need("backup", self.backup)
            try:
                return verify_archive(
                    self.client, artifact, min_bytes=self.plan.min_bytes, timeout_s=self.plan.timeout_s
                )
            except DrError as exc:
                nxt = artifact.next_candidate()
                hint = (f"\nnext candidate (NOT used — a broken newest backup is a failure): {nxt.describe()}"
                        if nxt else "")
                raise StepError("archive", f"{exc}{hint}") from None

        return self._step("archive", run)

    def restore(self) -> RestoreResult:
        def run() -> RestoreResult:
            artifact = self._need("backup", self.backup)
            self._need("archive", self.archive)
            url = self._new_database()
            return restore_backup(self.client, artifact, url, jobs=self.plan.jobs, command=self.plan.restore_command,
                                  timeout_s=self.plan.timeout_s)

        return self._step("restore", run)

    def restored_manifest(self) -> Manifest:
        def run() -> Manifest:
            restored = self._need("restore", self.restore)
            return take_manifest(restored.database_url, jobs=self.plan.jobs, label="restored manifest")

        return self._step("restored_manifest", run)

    def integrity_problems(self) -> list[str]:
        """Everything the integrity checks found; the drill runs only on a restore that passed them."""

        def run() -> list[str]:
            restored = self._need("restore", self.restore)
            problems: list[str] = []
            if self.plan.mode == "fresh":
                manifest = self._need("restored_manifest", self.restored_manifest)
                problems += diff_manifests(self.source_manifest(), manifest)
                problems += [f"invalid index in restored copy: {i}" for i in invalid_indexes(manifest)]
                return problems
            revision = self.revision_problem(restored.database_url)
            if revision:
                problems.append(revision)
            problems += [f"invariant {r.query!r} {r.detail}" for r in self.invariants() if not r.ok]
            return problems

        return self._step("integrity", run)

    def revision_problem(self, url: str) -> str | None:
        if self.plan.alembic_ini is None:
            return None
        revisions = restored_revisions(url)
        if revisions is None:
            tables = list_tables(url)
            return (f"the restored database has no alembic_version table — a backup of another database? "
                    f"tables found: {', '.join(tables[:12]) or 'none'}")
        known = known_revisions(self.plan.alembic_ini)
        unknown = [r for r in revisions if r not in known]
        if not revisions or unknown:
            return (f"restored alembic_version {revisions or '(empty)'} is not a revision of "
                    f"{self.plan.alembic_ini} ({len(known)} known) — a backup of another database or branch?")
        return None

    def invariants(self) -> list[InvariantResult]:
        def run() -> list[InvariantResult]:
            restored = self._need("restore", self.restore)
            return check_invariants(restored.database_url, self.plan.invariants)

        return self._step("invariants", run)

    def amcheck(self) -> AmcheckResult:
        def run() -> AmcheckResult:
            restored = self._need("restore", self.restore)
            return run_amcheck(self.client, restored.database_url, jobs=self.plan.jobs, timeout_s=self.plan.timeout_s)

        return self._step("amcheck", run)

    def drill(self) -> SmokeOutcome:
        def run() -> SmokeOutcome:
            restored = self._need("restore", self.restore)
            problems = self._need("integrity", self.integrity_problems)
            if problems:
                raise StepError("integrity", "; ".join(problems[:3]))
            assert self._run_smoke is not None
            return self._run_smoke(restored.database_url)

        return self._step("drill", run)

    def rto_s(self) -> float:
        """Restore plus service start to smoke green; the verification in between is not recovery."""
        restored = self._need("restore", self.restore)
        smoke = self._need("drill", self.drill)
        if smoke.failures:
            raise StepError("drill", "the drill never went green")
        return restored.elapsed_s + smoke.started_to_green_s

    def _need(self, name: str, fn: Callable[[], T]) -> T:
        return fn()
