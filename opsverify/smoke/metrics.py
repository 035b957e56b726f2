"""Prometheus scrapes, parsed with prometheus_client's own parser (never grep).

A scrape is one GET of the metrics path; `Scrape` keeps the parsed families and the exchange so a
failing check can show what came back. Counters are compared as sums of their samples between
two scrapes, leaving out the series the scrapes themselves produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from opsverify.smoke.probes import HttpProbe, ProbeResult

# Suffixes the parser strips from a family name (counter `_total`) or adds to its samples.
_SAMPLE_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info")
REFUSED_STATUSES = (401, 403)


class MetricsParseError(ValueError):
    """The body is not Prometheus text exposition format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class Scrape:
    """One scrape: the exchange, and the families when the body parsed."""

    result: ProbeResult
    families: dict[str, Family] = field(default_factory=dict)
    parse_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result.status == 200 and self.parse_error is None

    def names(self) -> set[str]:
        """Every name an operator might write: family names and sample names (`x_total`, `x_bucket`)."""
        found: set[str] = set()
        for family in self.families.values():
            found.add(family.name)
            found.update(s.name for s in family.samples)
        return found

    def missing(self, required: list[str]) -> list[str]:
        present = self.names()
        return [name for name in required if name not in present]

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """Sum of the samples called `name` (or its family), optionally matching labels; None if absent."""
        samples = self._samples(name)
        if labels:
            samples = [s for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
        if not samples:
            return None
        return sum(s.value for s in samples)

    def counter_sum(self, name: str, *, exclude_label_value: str | None = None) -> float | None:
        """Sum of a counter's samples, leaving out series that carry `exclude_label_value` (e.g. /metrics)."""
        samples = [s for s in self._samples(name) if not s.name.endswith("_created")]
        if exclude_label_value is not None:
            samples = [s for s in samples if exclude_label_value not in s.labels.values()]
        if not samples and not self._samples(name):
            return None
        return sum(s.value for s in samples)

    def _samples(self, name: str) -> list[Sample]:
        wanted = {name, f"{name}_total"}
        base = _family_name(name)
        samples: list[Sample] = []
        for family in self.families.values():
            if family.name not in (name, base):
                continue
            for sample in family.samples:
                # A histogram family holds _bucket/_sum/_count: asking for the family means _count.
                if sample.name in wanted or (
                    family.type in ("histogram", "summary") and sample.name == f"{name}_count"
                ):
                    samples.append(sample)
        return samples

    def describe(self) -> str:
        if self.result.status != 200:
            return self.result.describe()
        if self.parse_error:
            return f"{self.result.describe()}, body is not Prometheus text format ({self.parse_error})"
        return f"{self.result.describe()}, {len(self.families)} families"


def _family_name(name: str) -> str:
    for suffix in _SAMPLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_metrics(text: str) -> dict[str, Family]:
    """Families by name; raises MetricsParseError on text the Prometheus parser refuses."""
    from prometheus_client.parser import text_string_to_metric_families  # only a scrape needs it

    families: dict[str, Family] = {}
    try:
        for fam in text_string_to_metric_families(text):
            samples = tuple(Sample(s.name, dict(s.labels), float(s.value)) for s in fam.samples)
            previous = families.get(fam.name)
            if previous is not None:
                samples = previous.samples + samples
            families[fam.name] = Family(fam.name, fam.type, samples)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise MetricsParseError(f"{type(exc).__name__}: {exc}"[:200]) from None
    return families


def scrape(
    http: HttpProbe, path: str, headers: Mapping[str, str] | None = None, *, timeout_s: float = 10.0
) -> Scrape:
    result = http.get(path, headers=dict(headers or {}), timeout_s=timeout_s)
    if result.status != 200:
        return Scrape(result)
    try:
        return Scrape(result, parse_metrics(result.body))
    except MetricsParseError as exc:
        return Scrape(result, parse_error=str(exc))


def refused_without_token(result: ProbeResult) -> bool:
    return result.status in REFUSED_STATUSES


def is_protected(protected: bool | None, token_configured: bool) -> bool:
    """metrics.protected, defaulting to true when the profile configures a token."""
    return token_configured if protected is None else protected


def scrape_failure(s: Scrape, *, with_token: bool) -> str | None:
    if s.ok:
        return None
    what = (
        "the scrape was refused with the configured token — check metrics.token_header and the token's secret"
        if with_token and s.result.status in REFUSED_STATUSES
        else "check the exporter is enabled and mounted"
    )
    return f"expected 200 with Prometheus text from {s.result.url}, got {s.describe()} — {what}"
