"""The smoke gate, run for real against the reference service: green when healthy, and each fault
fails exactly the checks that own it, with a message an operator can act on.

Every run gets known values in every secret env var and is scanned afterwards: the values must
appear nowhere under reports/<run>/ (html, junit, json, service log) nor on the console.
Budget: ~100 s on 2 cores (one gate run per fault, ~6 s each; the readiness fault uses a 3 s poll).
"""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.gaterun import GateRun

QUICK = "tests/data/gates/sample_quick.toml"
WRONG_TOKEN_HEADER = "tests/data/gates/sample_wrong_token_header.toml"
SMOKE_AND_INTEGRATION = ("-m", "smoke or integration")
# Long enough for every min_bytes check; distinctive enough that a grep cannot hit by accident.
KNOWN_SECRETS = {
    "OPS_SAMPLE_METRICS_TOKEN": "opsv-known-metrics-token-7f3a9c2e51d84b06",
    "OPS_SAMPLE_JWT_SECRET": "opsv-known-jwt-secret-0c9d8e7f6a5b4c3d2e1f0a9b",
}


def assert_no_secret(run: GateRun, values: list[str] | None = None) -> None:
    """No secret value anywhere in the run directory or on the console."""
    values = values or list(KNOWN_SECRETS.values())
    files = [p for p in run.run_dir.rglob("*") if p.is_file()]
    assert files, f"run left no files in {run.run_dir}"
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaked = [v[:8] + "…" for v in values if v in text]
        assert not leaked, f"secret value(s) {leaked} found in {path.relative_to(run.run_dir)}"
    assert not [v for v in values if v in run.stdout], "secret value found on the console"


def run_with_secrets(gates, *args: str, faults: str = "", env: dict[str, str] | None = None) -> GateRun:  # type: ignore[no-untyped-def]
    run = gates(*args, faults=faults, env={**KNOWN_SECRETS, **(env or {})})
    assert_no_secret(run)
    return run


def test_healthy_reference_service_passes_every_smoke_and_integration_check(gates) -> None:  # type: ignore[no-untyped-def]
    run = run_with_secrets(gates, *SMOKE_AND_INTEGRATION)
    run.assert_all_passed()
    assert run.summary["result"] == "OK", run.summary
    assert (
        run.summary["gates"]["smoke"]["passed"] >= 12 and run.summary["gates"]["integration"]["passed"] >= 9
    )
    # Checks that need something this target does not have say why they skipped.
    assert "not https" in run.message("test_certificate_not_expiring_soon")
    assert "--expect-mode maintenance" in run.message("test_maintenance_blocks_api")


ENDPOINT = "test_endpoint_answers_within_budget"


def test_degraded_mode_accepts_ready_503_but_not_liveness_503(gates) -> None:  # type: ignore[no-untyped-def]
    """--allow-ready-degraded: readiness 503 is fine; liveness 503 fails the endpoint and degraded checks."""
    run = run_with_secrets(gates, "-m", "smoke", "--allow-ready-degraded", faults="ready=503,health=503")
    run.assert_only_failed(
        f"{ENDPOINT}[GET /healthz]", f"{ENDPOINT}[GET /health/live]", "test_liveness_holds_while_degraded"
    )
    assert run.outcomes[next(k for k in run.outcomes if f"{ENDPOINT}[GET /health/ready]" in k)] == "passed"
    assert "liveness /healthz: expected 200, got GET" in run.message("test_liveness_holds_while_degraded")


def test_degraded_mode_passes_when_only_readiness_is_down(gates) -> None:  # type: ignore[no-untyped-def]
    run = run_with_secrets(
        gates,
        "-m",
        "smoke",
        "-k",
        "ready or endpoint or degraded",
        "--allow-ready-degraded",
        faults="ready=503",
    )
    run.assert_all_passed()
    assert any("test_liveness_holds_while_degraded" in t for t in run.passed)


# --- rotation schedule and config sanity: no service needed, so these runs are fast --------------


def _schedule(tmp_path: Path, days_until_due: int) -> Path:
    due = dt.date.today() + dt.timedelta(days=days_until_due)
    path = tmp_path / f"rotation-{days_until_due}.yaml"
    path.write_text(
        "secrets:\n"
        "  - name: API_KEY\n    owner: platform\n    last_rotated: 2020-01-01\n    rotate_every_days: 36500\n"
        f"  - name: JWT_SECRET\n    owner: security\n    due: {due.isoformat()}\n"
    )
    return path


# DUE_TODAY / OK and schema errors are covered by the engine's unit tests (tests/test_smoke_engines.py).
@pytest.mark.parametrize(
    ("days", "outcome", "result", "text"),
    [
        (-3, "failed", "FAIL", "JWT_SECRET: OVERDUE (3 days overdue"),
        (5, "passed", "ATTENTION", "JWT_SECRET: DUE_SOON (due in 5 days"),
    ],
)
def test_rotation_schedule_verdicts(
    gates, tmp_path: Path, days: int, outcome: str, result: str, text: str
) -> None:  # type: ignore[no-untyped-def]
    run = run_with_secrets(
        gates, "-m", "smoke", "-k", "rotation", env={"OPS_ROTATION_SCHEDULE": str(_schedule(tmp_path, days))}
    )
    (test_id,) = [t for t in run.outcomes if "test_no_secret_overdue_for_rotation" in t]
    assert run.outcomes[test_id] == outcome, run.stdout[-2000:]
    assert run.summary["result"] == result, run.summary
    if outcome == "failed":
        assert text in run.message(test_id) and "S0" in run.message(test_id)
    elif text:
        assert any(text in reason for reason in run.summary["attention"]), run.summary["attention"]


def test_short_jwt_secret_fails_without_showing_it(gates) -> None:  # type: ignore[no-untyped-def]
    short = "opsv-short-jwt"  # 14 bytes
    run = gates("-m", "smoke", "-k", "config", env={**KNOWN_SECRETS, "OPS_SAMPLE_JWT_SECRET": short})
    run.assert_only_failed("test_config_value_is_strong_enough[OPS_SAMPLE_JWT_SECRET]")
    message = run.message("test_config_value_is_strong_enough")
    assert "OPS_SAMPLE_JWT_SECRET is 14 bytes; expected ≥ 32 bytes" in message, message
    assert_no_secret(run, [short, KNOWN_SECRETS["OPS_SAMPLE_METRICS_TOKEN"]])


# --- TLS: a real handshake with a local https server and a certificate made by openssl ------------


def _certificate(tmp_path: Path, days: int) -> tuple[Path, Path]:
    cert, key = tmp_path / f"cert-{days}.pem", tmp_path / f"key-{days}.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(days),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start a loopback https server with a certificate valid for `days`; yields (url, ca file)."""
    servers: list[ThreadingHTTPServer] = []

    def start(days: int) -> tuple[str, Path]:
        cert, key = _certificate(tmp_path, days)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}", cert

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("days", "outcome"), [(10, "failed"), (90, "passed")])
def test_tls_expiry_against_a_real_https_endpoint(gates, https_server, days: int, outcome: str) -> None:  # type: ignore[no-untyped-def]
    url, ca = https_server(days)
    run = gates(
        "-m",
        "smoke",
        "-k",
        "certificate",
        "--target",
        "examples/inventory",
        "--base-url",
        url,
        env={"SSL_CERT_FILE": str(ca)},
    )
    (test_id,) = [t for t in run.outcomes if "test_certificate_not_expiring_soon" in t]
    assert run.outcomes[test_id] == outcome, run.stdout[-3000:]
    if outcome == "failed":
        message = run.message(test_id)
        assert (
            "expected ≥ 30 days until certificate expiry, got " in message and "certbot renew" in message
        ), message
    assert "tls.days_left" in run.summary["figures"]
