"""HTTP probes: one request, timed, with an exchange an operator can read at 3 am.

Every request has an explicit timeout; every result says what was asked, what came back and how
long it took, with secret header values masked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from opsverify.redact import MASK, redact

DEFAULT_TIMEOUT_S = 10.0
SENSITIVE_HEADERS = {"authorization", "cookie", "set-cookie", "x-api-key", "x-metrics-token", "proxy-authorization"}


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k: (MASK if k.lower() in SENSITIVE_HEADERS or "token" in k.lower() else redact(v)) for k, v in headers.items()
    }


@dataclass(frozen=True)
class ProbeResult:
    method: str
    url: str
    status: int | None
    elapsed_ms: float
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    error: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def json(self) -> object:
        import json

        return json.loads(self.body)

    def describe(self) -> str:
        """One line: `GET http://…/healthz -> 503 in 12 ms` (or the transport error)."""
        got = f"{self.status}" if self.status is not None else f"no response ({self.error})"
        return f"{self.method} {redact(self.url)} -> {got} in {self.elapsed_ms:.0f} ms"

    def exchange(self, body_limit: int = 500) -> str:
        """The whole exchange for a report extra; secret headers masked, body truncated."""
        lines = [f"{self.method} {redact(self.url)}"]
        lines += [f"> {k}: {v}" for k, v in _safe_headers(self.request_headers).items()]
        lines.append(f"< status {self.status if self.status is not None else '-'} in {self.elapsed_ms:.1f} ms")
        lines += [f"< {k}: {v}" for k, v in _safe_headers(self.headers).items()]
        if self.error:
            lines.append(f"! {self.error}")
        if self.body:
            body = self.body if len(self.body) <= body_limit else self.body[:body_limit] + " …"
            lines.append(redact(body))
        return "\n".join(lines)


class HttpProbe:
    """A thin, explicit-timeout wrapper over one httpx.Client bound to the target's base URL."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, verify: bool = True) -> None:
        import httpx  # here, not at the top: a run that probes nothing (-m migration) starts faster

        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            follow_redirects=False,
            verify=verify,
        )
        self.history: list[ProbeResult] = []

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: object = None,
        content: bytes | None = None,
        timeout_s: float | None = None,
    ) -> ProbeResult:
        sent = dict(headers or {})
        url = f"{self.base_url}{path}"
        started = time.perf_counter()
        try:
            response = self._client.request(
                method,
                path,
                headers=sent,
                json=json,
                content=content,
                timeout=timeout_s if timeout_s is not None else self._httpx.USE_CLIENT_DEFAULT,
            )
            body = response.text if len(response.content) < 1_000_000 else response.text[:1_000_000]
            result = ProbeResult(
                method,
                url,
                response.status_code,
                (time.perf_counter() - started) * 1000,
                dict(response.headers),
                body,
                request_headers=sent,
            )
        except self._httpx.HTTPError as exc:
            result = ProbeResult(
                method,
                url,
                None,
                (time.perf_counter() - started) * 1000,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                request_headers=sent,
            )
        self.history.append(result)
        del self.history[:-50]
        return result

    def get(self, path: str, **kwargs: object) -> ProbeResult:
        return self.request("GET", path, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PollResult:
    last: ProbeResult
    attempts: int
    waited_s: float
    satisfied: bool


def poll_until(
    probe: Callable[[], ProbeResult],
    accept: Callable[[ProbeResult], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.25,
) -> PollResult:
    """Eventually-consistent checks: retry until `accept` or the budget is spent (never unbounded)."""
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        result = probe()
        waited = time.monotonic() - started
        if accept(result):
            return PollResult(result, attempts, waited, True)
        if waited + interval_s >= timeout_s:
            return PollResult(result, attempts, waited, False)
        time.sleep(interval_s)
