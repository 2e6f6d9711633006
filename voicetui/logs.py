"""Logging to the app's log file, with secrets redacted on the way out.

Every module logs through :mod:`logging`; :func:`setup_logging` attaches one file handler
(``paths.log_file()``, mode 0600) whose formatter redacts registered secret values and
anything shaped like a bearer token or an ``sk-`` key, so a key cannot reach the file even
inside a traceback or an SDK's debug message.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from voicetui import paths

REDACTED = "***"
_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[^\s'\",;]+"), r"\1" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + REDACTED),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)(?!bearer\b)[^\s'\",;]+"
        ),
        r"\1" + REDACTED,
    ),
)
_secrets: set[str] = set()
_lock = threading.Lock()
_installed: dict[str, logging.Handler] = {}  # "file" -> the handler, once set up


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every log line from now on (no-op for empty/very short values)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with registered secrets and token-shaped strings replaced by ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output (message, args, traceback) goes through :func:`redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: int | str = logging.INFO, path: Path | None = None) -> Path:
    """Send the ``voicetui`` loggers (and SDK warnings) to the log file; idempotent (a call
    with another path moves the handler there).

    Returns the log file path. The file is created with mode 0600.
    """
    target = path or paths.log_file()
    with _lock:
        root = logging.getLogger()
        current = _installed.get("file")
        if isinstance(current, logging.FileHandler):
            if current.baseFilename == str(target.absolute()):
                root.setLevel(level)
                return target
            # a different log file (another config/state dir): move over to it
            root.removeHandler(current)
            current.close()
            del _installed["file"]
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        handler = logging.FileHandler(target, encoding="utf-8")
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
        _installed["file"] = handler
    return target
