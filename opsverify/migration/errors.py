"""The migration gate's failures and their labelled messages."""

from __future__ import annotations

import logging

from opsverify.errors import OpsError
from opsverify.redact import redact

log = logging.getLogger("opsverify.migration")


class MigrationError(OpsError):
    """A tree that cannot be loaded or a step that failed; the message carries labelled context."""


class StepFailed(MigrationError):
    def __init__(self, direction: str, revision: str | None, cause: BaseException) -> None:
        self.direction = direction
        self.revision = revision
        self.cause = cause
        self.phase = 0  # which step of a DbSession.walk failed
        statement = getattr(cause, "statement", None)
        orig = getattr(cause, "orig", None)
        detail = (
            str(orig or cause).strip().splitlines()[0] if str(orig or cause).strip() else type(cause).__name__
        )
        lines = [
            f"{direction} failed",
            f"Revision: {revision or 'unknown'}",
            f"Error: {type(cause).__name__}: {detail}",
        ]
        if statement:
            lines.append(f"Statement: {' '.join(str(statement).split())[:400]}")
        self.detail = redact("\n".join(lines[2:]))
        super().__init__(redact("\n".join(lines)))

    @property
    def not_implemented(self) -> bool:
        """The downgrade raised NotImplementedError: the revision declares itself irreversible."""
        seen: set[int] = set()
        exc: BaseException | None = self.cause
        while exc is not None and id(exc) not in seen:
            if isinstance(exc, NotImplementedError):
                return True
            seen.add(id(exc))
            exc = exc.__cause__ or exc.__context__
        return False


def labelled(title: str, *context: tuple[str, object], help: str | None = None) -> str:
    """pytest-alembic style: a headline, then `Label: value` lines an operator can act on."""
    lines = [title]
    for label, value in context:
        text = str(value).rstrip()
        if "\n" in text:
            lines.append(f"{label}:")
            lines.extend(f"  {line}" for line in text.splitlines())
        else:
            lines.append(f"{label}: {text}")
    if help:
        lines.append(f"Help: {help}")
    return redact("\n".join(lines))
