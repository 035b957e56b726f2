"""The pytest plugin: options, markers, the mutation guard and the report on every run.

The only package of the engine that imports pytest (a self-test keeps it so). Everything it decides
is computed by plain modules (config, report, redact); these modules wire them to pytest's hooks:
`options` (command line, session building), `hooks` (configure .. unconfigure), `fixtures`
(`ops`, `profile`, `figures`, `report_extra`), `reporting` (per-test extras, redacted failures),
`state` (stash keys and report property names). Registering this module registers all of them.
"""

from opsverify.plugin.fixtures import FigureRecorder, figures, ops, profile, report_extra
from opsverify.plugin.hooks import (
    pytest_collection_modifyitems,
    pytest_collectreport,
    pytest_configure,
    pytest_configure_node,
    pytest_html_report_title,
    pytest_html_results_summary,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_runtest_setup,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_unconfigure,
)
from opsverify.plugin.options import EXPECT_MODES, GATE_TIMEOUTS_S, MARKERS, SERVICE_MODES, pytest_addoption
from opsverify.plugin.reporting import RedactedRepr, pytest_runtest_makereport
from opsverify.plugin.state import (
    ATTENTION_PROP,
    ENV_PROP,
    EXTRA_HTML_PROP,
    FIGURE_PROP,
    OPS_KEY,
    STATE_KEY,
    get_session,
)
from opsverify.session import OpsSession

__all__ = [
    "ATTENTION_PROP",
    "ENV_PROP",
    "EXPECT_MODES",
    "EXTRA_HTML_PROP",
    "FIGURE_PROP",
    "GATE_TIMEOUTS_S",
    "MARKERS",
    "OPS_KEY",
    "SERVICE_MODES",
    "STATE_KEY",
    "FigureRecorder",
    "OpsSession",
    "RedactedRepr",
    "figures",
    "get_session",
    "ops",
    "profile",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_collectreport",
    "pytest_configure",
    "pytest_configure_node",
    "pytest_html_report_title",
    "pytest_html_results_summary",
    "pytest_report_header",
    "pytest_runtest_logreport",
    "pytest_runtest_makereport",
    "pytest_runtest_setup",
    "pytest_sessionfinish",
    "pytest_sessionstart",
    "pytest_unconfigure",
    "report_extra",
]
