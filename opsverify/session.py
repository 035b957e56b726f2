"""The session type: what one run is about. Plain data; suites and the engine import it, not pytest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from opsverify.config import Profile
from opsverify.report import (
    RunRecord,
)


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
