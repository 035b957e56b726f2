"""Where a run's state lives on pytest's objects: the session stash key and the report property names."""

from __future__ import annotations

from typing import Any

import pytest

from opsverify.session import OpsSession

FIGURE_PROP = "ops_figure"
ATTENTION_PROP = "ops_attention"
EXTRA_HTML_PROP = "ops_summary_html"
ENV_PROP = "ops_environment"


OPS_KEY = pytest.StashKey[OpsSession]()
STATE_KEY = pytest.StashKey[dict[str, Any]]()


def get_session(config: pytest.Config) -> OpsSession:
    session = config.stash.get(OPS_KEY, None)
    if session is None:
        raise pytest.UsageError("opsverify: gates run from the repository root: pytest suites/ (or make verify)")
    return session
