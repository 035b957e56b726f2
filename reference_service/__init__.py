"""opsverify's reference service: the default target every self-test of the suite runs against.

Start it in-process with::

    from reference_service import Settings, create_app, serve
    app = create_app(Settings.from_env())       # an ASGI app, e.g. for uvicorn.Server
    serve(Settings.from_env(), port=8080)        # or block in uvicorn

or as a process: ``python -m reference_service serve --port 8080``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .faults import Faults, FaultSpecError, parse_faults
from .migrate import alembic_config, upgrade
from .seed import seed
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .app import create_app, serve

__all__ = [
    "FaultSpecError",
    "Faults",
    "Settings",
    "SettingsError",
    "alembic_config",
    "create_app",
    "parse_faults",
    "seed",
    "serve",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    # FastAPI is imported on first use only, so `python -m reference_service migrate`
    # (and its one-line failure) does not pay for it.
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
