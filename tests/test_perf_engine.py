"""The load engine on its own: `run_locust` against a real reference service.

Proves the parts the gate runs do not show: abort_on_fail stops a clearly broken run early,
5xx are counted apart from other failures, and a locustfile that cannot load is a LoadError
with locust's own message (not an empty 'pass').
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from opsverify.perf import LoadError, LoadSpec, run_locust, start_locust
from opsverify.reference import migrate_and_seed, running_reference_service
from opsverify.services import PostgresServer, RedisServer
from tests.gaterun import REPO_ROOT

pytestmark = pytest.mark.timeout(180)
SMOKE = REPO_ROOT / "locustfiles" / "smoke.py"


@pytest.fixture
def service_factory(shared_servers: tuple[PostgresServer, RedisServer], tmp_path: Path):
    pg, rd = shared_servers
    template = pg.template("sample-head-seeded", migrate_and_seed)

    def start(faults: str):
        url_cm = pg.throwaway_database(template=template)
        url = url_cm.__enter__()
        svc_cm = running_reference_service(
            database_url=url,
            redis_url=rd.url(),
            redis_prefix="perf-engine:",
            log_path=tmp_path / "svc.log",
            faults=faults,
        )
        svc = svc_cm.__enter__()
        stack.append((svc_cm, url_cm))
        return svc

    stack: list = []
    yield start
    for svc_cm, url_cm in reversed(stack):
        svc_cm.__exit__(None, None, None)
        url_cm.__exit__(None, None, None)


def test_abort_on_fail_stops_a_clearly_broken_run_early(service_factory, tmp_path: Path) -> None:
    svc = service_factory("latency_ms=1200")
    spec = LoadSpec(
        locustfile=SMOKE,
        host=svc.base_url,
        users=20,
        spawn_rate=20,
        duration_s=40,
        abort_thresholds=(("total", "p(95)<1000"), ("total", "count>100000")),
        abort_delay_s=3,
        abort_min_samples=20,
    )
    result = run_locust(spec, tmp_path / "locust")
    assert result.aborted and result.aborted.startswith("total p(95)<1000 broken while running"), (
        result.aborted
    )
    assert result.wall_s < 20, f"run was not stopped early: {result.wall_s:.1f} s of a 40 s run"
    assert result.total.count >= 20 and (tmp_path / "locust" / "locust.json").is_file()


def test_5xx_are_counted_apart_and_a_background_run_stops_with_its_results(
    service_factory, tmp_path: Path
) -> None:
    """start_locust/stop is what a check needs for traffic *during* something (online migration)."""
    svc = service_factory("error_rate=0.3")
    spec = LoadSpec(locustfile=SMOKE, host=svc.base_url, users=5, spawn_rate=5, duration_s=60)
    with start_locust(spec, tmp_path / "l") as run:
        time.sleep(5)
        assert run.running
        result = run.stop()
    assert not run.running and result.wall_s < 20, f"stop() took {result.wall_s:.1f} s"
    total = result.total
    assert total.count >= 50 and total.count_5xx > 0
    assert total.count_5xx == total.failures, "every failure here is an injected 500"
    assert result.endpoints["GET /healthz"].count_5xx == 0, "health probes are never faulted"
    assert result.endpoint("GET /api/items/{id}").count_5xx > 0
    assert any("500" in f.error for f in result.failures), result.failures


def test_broken_locustfile_is_an_error_with_locusts_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad_locustfile.py"
    bad.write_text("import this_module_does_not_exist\n")
    with pytest.raises(LoadError) as info:
        run_locust(LoadSpec(locustfile=bad, host="http://127.0.0.1:9", users=1, duration_s=2), tmp_path / "l")
    assert "this_module_does_not_exist" in str(info.value), str(info.value)


def test_unbounded_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="bounded"):
        run_locust(LoadSpec(locustfile=SMOKE, host="http://127.0.0.1:9", duration_s=0), tmp_path / "l")
