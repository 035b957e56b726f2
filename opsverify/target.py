"""The thing under test: where it answers, which databases it uses, whether the suite owns it."""

from __future__ import annotations

from dataclasses import dataclass

from opsverify.config import Endpoint, Profile
from opsverify.reference import ReferenceService


@dataclass(frozen=True)
class Target:
    profile: Profile
    base_url: str
    # The target's own database / Redis, when known (suite-owned, or named by the profile's url_env).
    database_url: str | None
    redis_url: str | None
    # Set when the suite started the reference service itself.
    service: ReferenceService | None = None

    def endpoint_headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {name: self.profile.resolve_header(value) for name, value in endpoint.headers.items()}

    def metrics_headers(self) -> dict[str, str]:
        metrics = self.profile.metrics
        if metrics.token and metrics.token_header:
            token = self.profile.secret(metrics.token)
            if token:
                return {metrics.token_header: token}
        return {}
