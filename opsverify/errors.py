"""Errors an operator can act on. Each carries one line that names the fix."""

from __future__ import annotations


class OpsError(Exception):
    """Base for errors that are reported as one line, never as a traceback."""


class ProfileError(OpsError):
    """A target profile is missing, malformed or refers to something that is not there."""


class UsageError(OpsError):
    """A command-line option or the environment is unusable (pytest exit code 4)."""


class ProviderError(OpsError):
    """No way to get a PostgreSQL or Redis server, or one did not come up."""
