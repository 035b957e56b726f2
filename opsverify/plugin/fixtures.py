"""Fixtures every gate shares: the session, the profile, figures and report extras."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from opsverify.config import Profile
from opsverify.plugin.reporting import _EXTRAS_KEY
from opsverify.plugin.state import ATTENTION_PROP, EXTRA_HTML_PROP, FIGURE_PROP, get_session
from opsverify.redact import redact
from opsverify.report import (
    Figure,
)
from opsverify.session import OpsSession

# Fixtures every gate shares: the session, figures and report extras.


@pytest.fixture(scope="session")
def ops(pytestconfig: pytest.Config) -> OpsSession:
    """The run's OpsSession (profile, options, report directory).
    Override only in self-tests that build a session by hand.
    """
    return get_session(pytestconfig)


@pytest.fixture(scope="session")
def profile(ops: OpsSession) -> Profile:
    """The run's validated Profile (shortcut for ops.profile); override to test a profile built in code."""
    return ops.profile


class FigureRecorder:
    """Lets a check put a measured number (and its budget) into summary.json and the report."""

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def record(
        self,
        name: str,
        value: float,
        *,
        unit: str = "",
        budget: float | None = None,
        warn_ratio: float | None = None,
        higher_is_better: bool = False,
    ) -> Figure:
        figure = Figure(name, float(value), unit, budget, warn_ratio, higher_is_better)
        self._node.user_properties.append((FIGURE_PROP, json.dumps(dataclasses.asdict(figure))))
        return figure

    def attention(self, reason: str) -> None:
        """The check passed, but an operator should look (result ATTENTION, not FAIL)."""
        self._node.user_properties.append((ATTENTION_PROP, redact(reason)))

    def summary_html(self, fragment: str) -> None:
        """A section for the report's summary (e.g. the locust chart); must be self-contained HTML."""
        self._node.user_properties.append((EXTRA_HTML_PROP, redact(fragment)))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> FigureRecorder:
    """A FigureRecorder for this test's measured figures (value, unit, budget) in the report.
    Not meant to be overridden.
    """
    return FigureRecorder(request.node)


@pytest.fixture
def report_extra(request: pytest.FixtureRequest, pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """A recorder attaching text/HTML to this test's row in report.html (redacted); not meant to be overridden."""
    extras = pytestconfig.pluginmanager.getplugin("html")
    added: list[dict[str, Any]] = []

    class _Extra:
        def text(self, name: str, content: str) -> None:
            added.append(
                {
                    "name": name,
                    "format_type": "text",
                    "content": redact(content),
                    "mime_type": "text/plain",
                    "extension": "txt",
                }
            )

        def html(self, content: str) -> None:
            added.append(
                {
                    "name": "html",
                    "format_type": "html",
                    "content": redact(content),
                    "mime_type": None,
                    "extension": None,
                }
            )

    yield _Extra()
    if extras is not None or added:
        request.node.stash[_EXTRAS_KEY] = added
