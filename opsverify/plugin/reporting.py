"""Per-test report plumbing: extras attached to pytest-html, failures redacted before anyone reads them."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest

from opsverify.redact import redact

_EXTRAS_KEY = pytest.StashKey[list[dict[str, Any]]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    added = item.stash.get(_EXTRAS_KEY, None)
    if added and report.when == "teardown":
        report.extras = [*getattr(report, "extras", []), *added]
    if report.longrepr is not None and (report.failed or report.skipped):
        # Failure messages go into report.html and junit.xml; neither may carry a secret.
        with contextlib.suppress(Exception):
            text = str(report.longrepr)
            cleaned = redact(text)
            if cleaned != text:
                report.longrepr = RedactedRepr(cleaned, _redacted_crash(getattr(report.longrepr, "reprcrash", None)))


@dataclasses.dataclass
class RedactedRepr:
    """A failure representation with secrets masked that keeps the one-line crash message for JUnit."""

    text: str
    reprcrash: Any = None

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def _redacted_crash(crash: Any) -> Any:
    if crash is None:
        return None
    with contextlib.suppress(Exception):
        return dataclasses.replace(crash, message=redact(crash.message))
    return None
