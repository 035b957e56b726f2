"""Secrets-rotation schedule (office runbook: `ops/secrets_rotation_schedule.yaml`, no OVERDUE/DUE_TODAY).

Schema (YAML; only metadata, never a secret value):

    secrets:
      - name: JWT_SECRET            # required: what to rotate
        owner: security             # optional: who rotates it
        last_rotated: 2025-01-10    # with rotate_every_days: due = last_rotated + rotate_every_days
        rotate_every_days: 90
      - name: TELEGRAM_BOT_TOKEN
        due: 2025-03-01             # or an explicit due date

Each entry has `due`, or both `last_rotated` and `rotate_every_days` (when all three are given,
`due` wins). Relative to today: OVERDUE (due before today), DUE_TODAY, DUE_SOON (within
`rotation.due_soon_days`), OK. OVERDUE and DUE_TODAY fail the gate; DUE_SOON makes it ATTENTION.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CI keeps the schedule outside the checkout; this points the check at it.
SCHEDULE_ENV = "OPS_ROTATION_SCHEDULE"


class ScheduleError(ValueError):
    """The schedule file is missing or does not follow the schema (one line, file and entry)."""


class Status(enum.StrEnum):
    OK = "OK"
    DUE_SOON = "DUE_SOON"
    DUE_TODAY = "DUE_TODAY"
    OVERDUE = "OVERDUE"


@dataclass(frozen=True)
class Entry:
    name: str
    due: dt.date
    owner: str | None = None

    def status(self, today: dt.date, due_soon_days: int) -> Status:
        days = (self.due - today).days
        if days < 0:
            return Status.OVERDUE
        if days == 0:
            return Status.DUE_TODAY
        if days <= due_soon_days:
            return Status.DUE_SOON
        return Status.OK


@dataclass(frozen=True)
class Verdict:
    entry: Entry
    status: Status
    days_left: int

    def describe(self) -> str:
        if self.days_left < 0:
            when = f"{-self.days_left} days overdue"
        elif self.days_left == 0:
            when = "due today"
        else:
            when = f"due in {self.days_left} days"
        owner = f", owner {self.entry.owner}" if self.entry.owner else ""
        return f"{self.entry.name}: {self.status} ({when}, due {self.entry.due.isoformat()}{owner})"


def schedule_path(
    configured: str | None, resolve: Callable[[str], Path], environ: Mapping[str, str] | None = None
) -> Path | None:
    """The file to read: $OPS_ROTATION_SCHEDULE, else the profile's rotation.schedule, else None."""
    env = os.environ if environ is None else environ
    if env.get(SCHEDULE_ENV):
        return Path(env[SCHEDULE_ENV])
    return resolve(configured) if configured else None


def _date(value: Any, where: str, key: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ScheduleError(f"{where}.{key}: expected a date YYYY-MM-DD, got {value!r}"[:200])


def load_schedule(path: Path) -> list[Entry]:
    import yaml  # here, not at the top: only a profile with a schedule needs it

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScheduleError(f"{path}: rotation schedule not found") from None
    except OSError as exc:
        raise ScheduleError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ScheduleError(f"{path}: malformed YAML: {first}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("secrets"), list):
        raise ScheduleError(f"{path}: expected a top-level `secrets:` list (see README, rotation schedule)")
    entries: list[Entry] = []
    for i, item in enumerate(raw["secrets"]):
        where = f"{path.name}: secrets[{i}]"
        if not isinstance(item, dict):
            raise ScheduleError(
                f"{where}: expected a mapping with name and due (or last_rotated + rotate_every_days)"
            )
        unknown = set(item) - {"name", "owner", "due", "last_rotated", "rotate_every_days", "notes"}
        if unknown:
            raise ScheduleError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ScheduleError(f"{where}.name: required (the secret's name, never its value)")
        where = f"{path.name}: secrets[{i}] ({name})"
        if "due" in item:
            due = _date(item["due"], where, "due")
        elif "last_rotated" in item and "rotate_every_days" in item:
            every = item["rotate_every_days"]
            if not isinstance(every, int) or isinstance(every, bool) or every < 1:
                raise ScheduleError(f"{where}.rotate_every_days: expected a positive integer, got {every!r}")
            due = _date(item["last_rotated"], where, "last_rotated") + dt.timedelta(days=every)
        else:
            raise ScheduleError(f"{where}: needs `due`, or `last_rotated` together with `rotate_every_days`")
        owner = item.get("owner")
        entries.append(Entry(name, due, str(owner) if owner is not None else None))
    return entries


def evaluate(entries: list[Entry], today: dt.date, due_soon_days: int) -> list[Verdict]:
    """One verdict per entry, most urgent first."""
    verdicts = [Verdict(e, e.status(today, due_soon_days), (e.due - today).days) for e in entries]
    return sorted(verdicts, key=lambda v: v.days_left)


def failing(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.status in (Status.OVERDUE, Status.DUE_TODAY)]


def due_soon(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.status is Status.DUE_SOON]
