"""Unit tests of the smoke/integration engines: pure functions, plus the dependency probes against
the real shared Postgres and Redis (no mocks). Budget: ~5 s.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from opsverify.config import Endpoint
from opsverify.integration.flows import items_of, oversized_body
from opsverify.reference import REFERENCE_ALEMBIC_INI, migrate_and_seed
from opsverify.services import PostgresServer, RedisServer
from opsverify.smoke import deps, rotation
from opsverify.smoke.metrics import MetricsParseError, Scrape, is_protected, parse_metrics
from opsverify.smoke.probes import ProbeResult
from opsverify.smoke.verdicts import config_value_failure, degraded_failures, request_id_echo_failure

EXPOSITION = """\
# HELP http_requests_total HTTP requests
# TYPE http_requests_total counter
http_requests_total{method="GET",path="/api/items",status="200"} 7.0
http_requests_total{method="GET",path="/metrics",status="200"} 3.0
# HELP http_request_duration_seconds Duration
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",method="GET",path="/x"} 2.0
http_request_duration_seconds_bucket{le="+Inf",method="GET",path="/x"} 2.0
http_request_duration_seconds_count{method="GET",path="/x"} 2.0
http_request_duration_seconds_sum{method="GET",path="/x"} 0.01
# TYPE outbox_pending gauge
outbox_pending 4.0
"""


def _result(status: int | None, body: str = "", headers: dict[str, str] | None = None) -> ProbeResult:
    return ProbeResult("GET", "http://127.0.0.1:9/x", status, 3.0, headers or {}, body)


def test_metrics_are_parsed_by_family_and_sample_name() -> None:
    scrape = Scrape(_result(200), parse_metrics(EXPOSITION))
    assert scrape.missing(
        ["http_requests_total", "http_request_duration_seconds", "outbox_pending", "nope"]
    ) == ["nope"]
    assert scrape.counter_sum("http_requests_total") == 10.0
    assert scrape.counter_sum("http_requests_total", exclude_label_value="/metrics") == 7.0
    assert scrape.value("outbox_pending") == 4.0
    assert scrape.value("absent_metric") is None


def test_garbage_is_not_prometheus_text() -> None:
    with pytest.raises(MetricsParseError):
        parse_metrics("<html>login page</html>\n{\n")


def test_metrics_protected_defaults_to_token_configured() -> None:
    assert is_protected(None, True) and not is_protected(None, False) and not is_protected(False, True)


def test_rotation_statuses_relative_to_today(tmp_path: Path) -> None:
    today = dt.date(2025, 6, 1)
    path = tmp_path / "s.yaml"
    path.write_text(
        "secrets:\n"
        "  - {name: A, due: 2025-05-30}\n"
        "  - {name: B, due: 2025-06-01}\n"
        "  - {name: C, last_rotated: 2025-03-10, rotate_every_days: 90}\n"
        "  - {name: D, due: 2025-09-01, owner: ops}\n"
    )
    verdicts = rotation.evaluate(rotation.load_schedule(path), today, 14)
    assert [(v.entry.name, v.status.value) for v in verdicts] == [
        ("A", "OVERDUE"),
        ("B", "DUE_TODAY"),
        ("C", "DUE_SOON"),
        ("D", "OK"),
    ]
    assert [v.entry.name for v in rotation.failing(verdicts)] == ["A", "B"]
    assert verdicts[2].describe() == "C: DUE_SOON (due in 7 days, due 2025-06-08)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secrets:\n  - name: X\n    rotate_every_days: 30\n", "secrets[0] (X): needs `due`"),
        ("secrets:\n  - name: X\n    due: soon\n", "secrets[0] (X).due: expected a date YYYY-MM-DD"),
        ("secrets:\n  - name: X\n    due: 2025-01-01\n    value: hunter2\n", "unknown key(s) value"),
        ("- just a list\n", "expected a top-level `secrets:` list"),
    ],
)
def test_rotation_schema_errors_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(rotation.ScheduleError) as info:
        rotation.load_schedule(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_rotation_schedule_env_overrides_profile(tmp_path: Path) -> None:
    assert rotation.schedule_path("ops/x.yaml", Path, {rotation.SCHEDULE_ENV: "/tmp/y.yaml"}) == Path(
        "/tmp/y.yaml"
    )
    assert rotation.schedule_path("ops/x.yaml", Path, {}) == Path("ops/x.yaml")
    assert rotation.schedule_path(None, Path, {}) is None


def test_config_failure_never_contains_the_value() -> None:
    value = "s3cr3t-value"
    message = config_value_failure("JWT_SECRET", value, 32, required=True)
    assert message is not None and "JWT_SECRET is 12 bytes; expected ≥ 32" in message and value not in message
    assert config_value_failure("JWT_SECRET", "x" * 32, 32, required=True) is None
    assert "is not set" in (config_value_failure("JWT_SECRET", None, 32, required=True) or "")
    assert config_value_failure("JWT_SECRET", None, 32, required=False) is None


def test_degraded_accepts_ready_503_only() -> None:
    live, ready = Endpoint("/live", kind="live"), Endpoint("/ready", kind="ready")
    assert degraded_failures([(live, _result(200)), (ready, _result(503))]) == []
    failures = degraded_failures([(live, _result(503)), (ready, _result(500))])
    assert len(failures) == 2 and failures[0].startswith("liveness /live: expected 200")


def test_request_id_echo_verdict() -> None:
    assert (
        request_id_echo_failure(_result(200, headers={"x-request-id": "abc"}), "X-Request-Id", "abc") is None
    )
    assert "got no such header" in (request_id_echo_failure(_result(200), "X-Request-Id", "abc") or "")


def test_list_shapes_and_oversized_body() -> None:
    assert items_of(_result(200, '{"items": [{"id": 1}]}')) == [{"id": 1}]
    assert items_of(_result(200, '[{"id": 1}]')) == [{"id": 1}]
    assert items_of(_result(200, '{"items": "nope"}')) is None
    assert len(oversized_body("m", 1000)) > 1000


# --- dependency probes against the real shared servers ---------------------------------------------


def test_postgres_and_redis_probes(shared_servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, rd = shared_servers
    assert deps.postgres_select_one(pg.url(), timeout_s=5).ok
    assert deps.redis_ping(rd.url(), timeout_s=5).ok
    down = deps.postgres_select_one("postgresql://u:pw-do-not-print@127.0.0.1:1/x", timeout_s=2)
    assert not down.ok and "pw-do-not-print" not in down.describe()
    assert not deps.redis_ping("redis://127.0.0.1:1/0", timeout_s=1).ok


def test_schema_state_and_connection_budget(shared_servers: tuple[PostgresServer, RedisServer]) -> None:
    pg, _ = shared_servers
    with pg.throwaway_database() as url:
        never = deps.schema_state(url, REFERENCE_ALEMBIC_INI, timeout_s=5)
        assert not never.at_head and "no alembic_version table" in (never.error or "")
        migrate_and_seed(url, rows=0, revision="5a0e0003")
        behind = deps.schema_state(url, REFERENCE_ALEMBIC_INI, timeout_s=5)
        assert not behind.at_head and behind.current and behind.heads and behind.current != behind.heads
        usage = deps.connection_usage(url, 0.8, timeout_s=5)
        assert usage.error is None and usage.in_use >= 1 and usage.within_budget
        assert not deps.connection_usage(url, 1e-9, timeout_s=5).within_budget
