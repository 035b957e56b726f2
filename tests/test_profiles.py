"""Profiles are validated on load: one clear line naming file and key, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsverify.config import available_targets, load_profile
from opsverify.errors import ProfileError

DATA = Path(__file__).parent / "data" / "profiles"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("malformed.toml", "malformed.toml: malformed TOML: "),
        ("unknown_key.toml", "unknown_key.toml: unknown key 'smoke.ready_timeout'"),
        ("wrong_type.toml", "wrong_type.toml: smoke.ready_timeout_s: expected number, got str"),
        ("missing_secret.toml", "secrets.api_key: environment variable OPS_TEST_SURELY_UNSET_API_KEY is not set"),
        ("cycle_a.toml", "extends: cycle"),
    ],
)
def test_bad_profile_is_one_clear_line(name: str, expected: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(str(DATA / name))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_malformed_toml_names_the_line() -> None:
    with pytest.raises(ProfileError, match=r"line 3"):
        load_profile(str(DATA / "malformed.toml"))


def test_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-target")
    assert "unknown target 'no-such-target'" in str(info.value)
    assert "sample" in str(info.value)


def test_extends_merges_tables_key_by_key() -> None:
    profile = load_profile(str(DATA / "child.toml"))
    assert profile.smoke.ready_timeout_s == 5
    assert profile.smoke.ready_path == "/ready"
    assert profile.protected is True
    assert profile.base_url == "http://127.0.0.1:9"


def test_secret_values_come_from_the_environment_only() -> None:
    profile = load_profile(str(DATA / "missing_secret.toml"), environ={"OPS_TEST_SURELY_UNSET_API_KEY": "s3cr3t-value"})
    assert profile.secret("api_key") == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(profile)


def test_every_shipped_profile_loads() -> None:
    env = {"OPS_TEST_ANY": "x"}
    for name in available_targets():
        try:
            load_profile(name, environ=env)
        except ProfileError as exc:
            # Shipped profiles may require secrets; that must be the only complaint.
            assert "is not set" in str(exc), exc
