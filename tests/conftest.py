"""Self-test fixtures: one pair of real servers for the whole self-test session.

Gate runs under test use `--services external` pointed at these, so each run costs a template
clone instead of a server start. Tests that prove the providers themselves start their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from opsverify.errors import ProviderError
from opsverify.reference import migrate_and_seed
from opsverify.services import LocalProvider, PostgresServer, Provider, RedisServer, choose_provider
from tests.gaterun import GateRun, run_gates


@pytest.fixture(scope="session")
def shared_servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    """Local servers when the binaries are here (fast, and some self-tests read Redis's RDB from
    disk); otherwise whatever OPS_SELFTEST_SERVICES (default auto) provides."""
    provider: Provider = LocalProvider()
    try:
        provider.check()
    except ProviderError:
        provider = choose_provider(os.environ.get("OPS_SELFTEST_SERVICES", "auto"))
    pg, rd = provider.start()
    try:
        yield pg, rd
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def sample_template_name(shared_servers: tuple[PostgresServer, RedisServer]) -> str:
    """The reference service's database at head, built once for every gate run of the session."""
    pg, _ = shared_servers
    return pg.template("sample-head-seeded", migrate_and_seed)


@pytest.fixture(scope="session")
def external_env(shared_servers: tuple[PostgresServer, RedisServer], sample_template_name: str) -> dict[str, str]:
    pg, rd = shared_servers
    return {
        "OPS_DATABASE_URL": pg.url(),
        "OPS_REDIS_URL": rd.url(),
        "OPS_SERVICES": "external",
        "OPS_SAMPLE_TEMPLATE": sample_template_name,
    }


@pytest.fixture
def gates(tmp_path: Path, external_env: dict[str, str]) -> Callable[..., GateRun]:
    """`gates("-m", "smoke", faults="health=503")` runs the real gates against the reference service."""

    counter = iter(range(1000))

    def run(*args: str, faults: str = "", env: dict[str, str] | None = None, **kwargs: object) -> GateRun:
        report_dir = tmp_path / f"reports-{next(counter)}"
        return run_gates(*args, report_dir=report_dir, env={**external_env, **(env or {})}, faults=faults, **kwargs)  # type: ignore[arg-type]

    return run
