"""Target profiles: `targets/NAME.toml`, validated on load.

A profile says *what* to check about one service; the suites say *how*. Every key is declared
by the dataclasses below, so an unknown key or a wrong type is refused with the file and the
dotted key, before a single request is sent.

Over 400 lines on purpose: the dataclasses are the profile's schema, one per table, and read best
side by side with the one generic validator that builds them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from opsverify.errors import ProfileError
from opsverify.redact import register_secret

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = REPO_ROOT / "targets"


@dataclass(frozen=True)
class SecretRef:
    """A secret is named in the profile, its value lives only in the environment."""

    env: str
    required: bool = True


@dataclass(frozen=True)
class Endpoint:
    path: str
    status: list[int] = field(default_factory=lambda: [200])
    max_ms: float = 1000.0
    method: str = "GET"
    # "live" endpoints must stay 200 even in degraded mode; "ready" ones may answer 503 there.
    kind: str = "plain"
    # Header values of the form "secret:NAME" are filled from [secrets] at request time.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmokeSection:
    ready_timeout_s: float = 30.0
    # Polled until it answers 200 before any one-shot check; default: first `ready` endpoint.
    ready_path: str | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    request_id_header: str = "X-Request-Id"
    # Path used for the X-Request-Id echo check; None disables it.
    request_id_path: str | None = "/healthz"


@dataclass(frozen=True)
class MetricsSection:
    path: str | None = "/metrics"
    token_header: str | None = None
    # Name of a [secrets] entry holding the token.
    token: str | None = None
    # A scrape without the token must be refused; default: true when a token is configured.
    protected: bool | None = None
    required: list[str] = field(default_factory=list)
    request_counter: str = "http_requests_total"


@dataclass(frozen=True)
class DatabaseSection:
    url_env: str | None = None
    # Connections in use must stay below this share of max_connections (inventory runbook: 80 %).
    max_connections_ratio: float = 0.8


@dataclass(frozen=True)
class RedisSection:
    url_env: str | None = None


@dataclass(frozen=True)
class MigrationsSection:
    alembic_ini: str | None = None
    irreversible: list[str] = field(default_factory=list)
    # Revisions allowed to change row counts (data migrations) besides those marked in code.
    data_changes: list[str] = field(default_factory=list)
    # "module:attr" of the SQLAlchemy MetaData for the drift check.
    metadata: str | None = None
    lint_exclude: list[str] = field(default_factory=list)
    lint_extra_rules: list[str] = field(default_factory=list)
    seed_sql: str | None = None
    seed_rows: int = 20
    # Lowest revision the full downgrade must reach; default: base.
    lowest: str | None = None
    lock_timeout_ms: int = 2000


@dataclass(frozen=True)
class BackupSection:
    dir: str | None = None
    rto_s: float = 1800.0
    rpo_s: float = 86400.0
    # Placeholders: {dsn} {output} ({input} for restore_command, {dsn} is the throwaway target).
    command: str | None = None
    restore_command: str | None = None
    # Started on the restored database: {dsn} {port}; must serve the profile's smoke endpoints.
    drill_command: str | None = None
    invariants: list[str] = field(default_factory=list)
    # A query returning one timestamptz: the newest row the backup holds (RPO in newest mode).
    freshness_query: str | None = None
    min_bytes: int = 1024
    jobs: int = 2
    format: str = "custom"
    redis: bool = True
    # The team's Redis backup ({output} {host} {port}); default: BGSAVE + redis-cli --rdb.
    redis_command: str | None = None


@dataclass(frozen=True)
class QueryBench:
    name: str
    sql: str
    runs: int = 20
    mean_ms: float = 250.0
    p95_ms: float = 400.0


@dataclass(frozen=True)
class PerfSection:
    locustfile: str = "locustfiles/smoke.py"
    users: int = 10
    spawn_rate: float = 10.0
    duration_s: float = 15.0
    min_requests: int = 100
    processes: int = 0
    abort_on_fail: bool = False
    abort_delay_s: float = 5.0
    thresholds: dict[str, list[str]] = field(default_factory=lambda: {"total": ["p(95)<1000", "rate<0.01"]})
    queries: list[QueryBench] = field(default_factory=list)


@dataclass(frozen=True)
class TlsSection:
    min_days: int = 30


@dataclass(frozen=True)
class RotationSection:
    # YAML file in the office runbook's ops/secrets_rotation_schedule.yaml shape.
    schedule: str | None = None
    due_soon_days: int = 14


@dataclass(frozen=True)
class ConfigCheck:
    env: str
    min_bytes: int = 0
    required: bool = True


@dataclass(frozen=True)
class IntegrationSection:
    items_path: str = "/api/items"
    ingest_path: str | None = "/api/ingest"
    max_batch_items: int = 100
    max_body_bytes: int = 65536
    rate_limit_burst: int = 150
    outbox_drain_s: float = 15.0
    outbox_pending_metric: str = "outbox_pending"
    outbox_dead_metric: str = "outbox_dead_total"
    # Non-health path used to prove maintenance / read-only modes.
    probe_path: str = "/api/items"


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    description: str = ""
    base_url: str | None = None
    protected: bool = False
    extends: str | None = None
    # True for the bundled reference service: the suite starts it, owns it, may write to it.
    reference_service: bool = False
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    smoke: SmokeSection = field(default_factory=SmokeSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    redis: RedisSection = field(default_factory=RedisSection)
    migrations: MigrationsSection = field(default_factory=MigrationsSection)
    backup: BackupSection = field(default_factory=BackupSection)
    perf: PerfSection = field(default_factory=PerfSection)
    tls: TlsSection = field(default_factory=TlsSection)
    rotation: RotationSection = field(default_factory=RotationSection)
    config_checks: list[ConfigCheck] = field(default_factory=list)
    integration: IntegrationSection = field(default_factory=IntegrationSection)
    # Resolved secret values; never printed (see redact.py).
    secret_values: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def secret(self, name: str) -> str | None:
        return self.secret_values.get(name)

    def resolve_header(self, value: str) -> str:
        if value.startswith("secret:"):
            return self.secret_values.get(value.removeprefix("secret:"), "")
        return value

    def relative_path(self, value: str) -> Path:
        """Paths in a profile are relative to the repository root, like the CLI's."""
        path = Path(value)
        return path if path.is_absolute() else REPO_ROOT / path


# ---------------------------------------------------------------------------------------------
# Loading


def available_targets() -> list[str]:
    found = sorted(p.relative_to(TARGETS_DIR).with_suffix("").as_posix() for p in TARGETS_DIR.rglob("*.toml"))
    return found


def find_profile(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or ("/" in name_or_path and candidate.exists()):
        if candidate.is_file():
            return candidate.resolve()
        raise ProfileError(f"target profile {name_or_path} not found (no such file)")
    path = TARGETS_DIR / f"{name_or_path}.toml"
    if path.is_file():
        return path
    raise ProfileError(
        f"unknown target '{name_or_path}': no targets/{name_or_path}.toml "
        f"(available: {', '.join(available_targets()) or 'none'})"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{_display(path)}: malformed TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(f"{_display(path)}: cannot read: {exc.strerror}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; arrays and scalars in the child replace the parent's."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        chain = " -> ".join(_display(p) for p in (*seen, path))
        raise ProfileError(f"{_display(path)}: extends: cycle ({chain})")
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ProfileError(f"{_display(path)}: extends: expected a target name, got {type(parent).__name__}")
    parent_path = path.parent / f"{parent}.toml"
    if not parent_path.is_file():
        parent_path = find_profile(parent)
    return _merge(_load_raw(parent_path, (*seen, path)), raw)


def load_profile(name_or_path: str, *, environ: typing.Mapping[str, str] | None = None) -> Profile:
    """Load, inherit, validate and resolve secrets. Raises ProfileError with one clear line."""
    env = os.environ if environ is None else environ
    path = find_profile(name_or_path)
    raw = _load_raw(path)
    raw.pop("extends", None)
    name = path.relative_to(TARGETS_DIR).with_suffix("").as_posix() if path.is_relative_to(TARGETS_DIR) else path.stem
    secrets = raw.pop("secrets", {})
    refs = _build_secrets(secrets, path)
    for reserved in ("name", "source", "secret_values"):
        if reserved in raw:
            raise ProfileError(f"{_display(path)}: unknown key '{reserved}'")
    profile = dataclasses.replace(_build(Profile, {**raw, "name": name, "source": path}, path, ""), secrets=refs)
    values: dict[str, str] = {}
    for key, ref in refs.items():
        value = env.get(ref.env)
        if value:
            values[key] = value
            register_secret(value)
        elif ref.required:
            raise ProfileError(
                f"{_display(path)}: secrets.{key}: environment variable {ref.env} is not set "
                f"(export {ref.env}=... or mark it required = false)"
            )
    _check_references(profile, path)
    return dataclasses.replace(profile, secret_values=values)


def _build_secrets(raw: Any, path: Path) -> dict[str, SecretRef]:
    if not isinstance(raw, dict):
        raise ProfileError(f'{_display(path)}: secrets: expected a table of NAME = "ENV_VAR"')
    refs: dict[str, SecretRef] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            refs[key] = SecretRef(env=value)
        elif isinstance(value, dict):
            refs[key] = _build(SecretRef, value, path, f"secrets.{key}")
        else:
            raise ProfileError(
                f"{_display(path)}: secrets.{key}: expected an env var name or {{ env = ..., required = ... }}"
            )
    return refs


def _check_references(profile: Profile, path: Path) -> None:
    if profile.metrics.token and profile.metrics.token not in profile.secrets:
        raise ProfileError(f"{_display(path)}: metrics.token: '{profile.metrics.token}' is not a [secrets] entry")
    if profile.metrics.token and not profile.metrics.token_header:
        raise ProfileError(f"{_display(path)}: metrics.token_header: required when metrics.token is set")
    for i, endpoint in enumerate(profile.smoke.endpoints):
        if endpoint.kind not in ("plain", "live", "ready"):
            raise ProfileError(f"{_display(path)}: smoke.endpoints[{i}].kind: expected plain, live or ready")
        if endpoint.method.upper() not in ("GET", "HEAD"):
            raise ProfileError(f"{_display(path)}: smoke.endpoints[{i}].method: smoke is read-only (GET or HEAD)")
        for header, value in endpoint.headers.items():
            ref = value.removeprefix("secret:")
            if value.startswith("secret:") and ref not in profile.secrets:
                raise ProfileError(
                    f"{_display(path)}: smoke.endpoints[{i}].headers.{header}: '{ref}' is not a [secrets] entry"
                )
    if profile.base_url is not None and not profile.base_url.startswith(("http://", "https://")):
        raise ProfileError(f"{_display(path)}: base_url: expected an http:// or https:// URL")
    if profile.backup.format not in ("custom", "directory"):
        raise ProfileError(f"{_display(path)}: backup.format: expected custom or directory")


# ---------------------------------------------------------------------------------------------
# A small validator driven by the dataclasses' type hints.


def _display(path: Path) -> str:
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, path: Path, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for arg in args:
            try:
                return _convert(arg, value, path, key)
            except ProfileError:
                continue
        raise _type_error(tp, value, path, key)
    if origin is list:
        (item_tp,) = get_args(tp)
        # A single status code is as natural as a list of them.
        if item_tp is int and isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if not isinstance(value, list):
            raise _type_error(tp, value, path, key)
        return [_convert(item_tp, item, path, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        _, value_tp = get_args(tp)
        if not isinstance(value, dict):
            raise _type_error(tp, value, path, key)
        return {k: _convert(value_tp, v, path, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _type_error(tp, value, path, key)
        return _build(tp, value, path, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(tp, value, path, key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(tp, value, path, key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _type_error(tp, value, path, key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(tp, value, path, key)
    if tp is Path:
        return value
    raise _type_error(tp, value, path, key)


def _type_error(tp: Any, value: Any, path: Path, key: str) -> ProfileError:
    got = type(value).__name__
    return ProfileError(f"{_display(path)}: {key}: expected {_type_name(tp)}, got {got} {value!r}"[:300])


def _build(cls: Any, raw: dict[str, Any], path: Path, prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "secret_values"}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            known = ", ".join(sorted(n for n in names if n not in ("name", "source")))
            raise ProfileError(f"{_display(path)}: unknown key '{dotted}' (known here: {known})")
        kwargs[key] = _convert(hints[key], value, path, dotted)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
    ]
    if missing:
        dotted = f"{prefix}.{missing[0]}" if prefix else missing[0]
        raise ProfileError(f"{_display(path)}: {dotted}: required key is missing")
    return cls(**kwargs)
