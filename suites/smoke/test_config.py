"""Config sanity: secrets the profile names are set and strong enough (values never shown)."""

from __future__ import annotations

import os

import pytest

from opsverify.config import ConfigCheck
from opsverify.redact import register_secret
from opsverify.smoke.verdicts import config_value_failure

pytestmark = pytest.mark.smoke


def test_config_value_is_strong_enough(config_check: ConfigCheck) -> None:
    """Ingest runbook: JWT_SECRET must be at least 32 bytes; a short one lets tokens be forged."""
    value = os.environ.get(config_check.env)
    if value:
        register_secret(value)
    elif not config_check.required:
        pytest.skip(f"{config_check.env} is not set (optional in this profile)")
    failure = config_value_failure(
        config_check.env, value, config_check.min_bytes, required=config_check.required
    )
    assert failure is None, failure
