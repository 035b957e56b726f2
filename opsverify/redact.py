"""One place that knows every secret value, so every output can be filtered through it.

Secrets are registered when a profile resolves them (and when the suite generates one for the
reference service). Anything written to a report, a log or JUnit passes through `redact`.
"""

from __future__ import annotations

import re
from pathlib import Path

MASK = "***"
_secrets: set[str] = set()
# Credentials inside URLs (postgresql://user:password@host) are secrets even when unregistered.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)


def register_secret(value: str) -> None:
    # Very short values would mask innocent text everywhere; profiles' secrets are longer.
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def redact_file(path: Path) -> None:
    """Rewrite a text file in place with every secret masked (no-op when nothing matches)."""
    try:
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    cleaned = redact(original)
    if cleaned != original:
        path.write_text(cleaned, encoding="utf-8")


def redact_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".xml", ".json", ".log", ".jsonl", ".txt", ".csv"}:
            redact_file(path)
