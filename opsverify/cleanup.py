"""Owners for throwaway things: whatever is registered here is removed on exit, even on Ctrl-C.

Fixtures remove what they create in their teardown; this registry is the net below them for
SIGTERM and for paths where teardown never runs (a crash in a provider's start). Ryuk is often
disabled on machines without a registry, so the suite cannot lean on it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("opsverify.cleanup")

_lock = threading.Lock()
_counter = itertools.count()
_actions: dict[int, tuple[str, Callable[[], None]]] = {}
_installed = False


def register(description: str, action: Callable[[], None]) -> int:
    """Register an undo action; returns a token for `done` once it ran normally."""
    with _lock:
        token = next(_counter)
        _actions[token] = (description, action)
    return token


def done(token: int) -> None:
    with _lock:
        _actions.pop(token, None)


def run_all() -> None:
    """Undo everything still registered, newest first; never raises."""
    while True:
        with _lock:
            if not _actions:
                return
            token = max(_actions)
            description, action = _actions.pop(token)
        try:
            action()
        except Exception as exc:
            log.warning("cleanup of %s failed: %s", description, exc)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the same path as Ctrl-C so pytest runs fixture teardown.
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(run_all)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, _on_sigterm)


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float = 5.0) -> None:
    """Terminate a child and its process group, then kill what is left after the grace period."""
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    own_group = pgid == os.getpgid(0)
    with contextlib.suppress(ProcessLookupError):
        if own_group:
            proc.terminate()
        else:
            os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if own_group:
                proc.kill()
            else:
                os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
