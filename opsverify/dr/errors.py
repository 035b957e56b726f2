"""The DR gate's failures: a step that could not do its work, and which step owns a failure."""

from __future__ import annotations

import logging

from opsverify.errors import OpsError
from opsverify.redact import redact

log = logging.getLogger("opsverify.dr")


class DrError(OpsError):
    """A drill step could not do its work; the message names what and what to do."""


class StepError(OpsError):
    """A step failed. `step` is the step that owns the failure (not the one that asked for it)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = redact(message)

    @property
    def headline(self) -> str:
        return self.message.splitlines()[0] if self.message else self.step
