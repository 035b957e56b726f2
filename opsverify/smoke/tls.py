"""Days until the target's TLS certificate expires (inventory runbook: renew 30 days before).

A real handshake with the system trust store (or a given CA file), bounded by a socket timeout.
A certificate that does not verify (expired, wrong host, unknown CA) is reported with the TLS
library's own reason instead of a date.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CertificateInfo:
    host: str
    port: int
    not_after: dt.datetime | None = None
    days_left: float | None = None
    subject: str = ""
    issuer: str = ""
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.host}:{self.port}: {self.error}"
        assert self.not_after is not None and self.days_left is not None
        return (
            f"{self.host}:{self.port} certificate for {self.subject or '?'} (issuer {self.issuer or '?'}) "
            f"expires {self.not_after:%Y-%m-%d %H:%M} UTC, in {self.days_left:.1f} days"
        )


def https_endpoint(base_url: str) -> tuple[str, int] | None:
    """(host, port) for an https URL; None for anything else (there is no certificate to check)."""
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    return parts.hostname, parts.port or 443


def _name(entries: object) -> str:
    # getpeercert() gives ((('commonName', 'x'),), ...); the CN is what an operator recognises.
    if isinstance(entries, tuple):
        for rdn in entries:
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
    return ""


def certificate_info(
    host: str,
    port: int = 443,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cafile: str | None = None,
    now: dt.datetime | None = None,
) -> CertificateInfo:
    context = ssl.create_default_context(cafile=cafile)
    now = now or dt.datetime.now(dt.UTC)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            raw.settimeout(timeout_s)
            with context.wrap_socket(raw, server_hostname=host) as tls:
                cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as exc:
        return CertificateInfo(host, port, error=f"certificate does not verify: {exc.verify_message or exc}")
    except (OSError, ssl.SSLError) as exc:
        return CertificateInfo(host, port, error=f"TLS handshake failed: {type(exc).__name__}: {exc}")
    if not cert or "notAfter" not in cert:
        return CertificateInfo(host, port, error="the server presented no certificate")
    not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), dt.UTC)
    days_left = (not_after - now).total_seconds() / 86400
    return CertificateInfo(
        host, port, not_after, days_left, _name(cert.get("subject")), _name(cert.get("issuer"))
    )


def expiry_failure(info: CertificateInfo, min_days: int) -> str | None:
    """None when the certificate has at least `min_days` left; otherwise the operator's reason."""
    if info.error:
        return f"expected a valid certificate with ≥ {min_days} days left, got: {info.describe()}"
    assert info.days_left is not None
    if info.days_left < min_days:
        return (
            f"expected ≥ {min_days} days until certificate expiry, got {info.days_left:.1f} days "
            f"({info.describe()}) — renew now (`certbot renew`), inventory runbook"
        )
    return None
