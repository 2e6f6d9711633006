"""Logging to the app's log file, with secrets redacted on the way out.

Every module logs through :mod:`logging`; :func:`setup_logging` attaches one rotating file
handler (``paths.log_file()``, mode 0600, 1 MiB x 3 backups) whose formatter redacts
registered secret values and anything shaped like a bearer token or an ``sk-`` key, so a
key cannot reach the file even inside a traceback or an SDK's debug message.

When the state dir cannot be written (read-only, full, not a directory) nothing crashes:
logging falls back to stderr at WARNING, through the same redacting formatter.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import sys
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
MAX_BYTES = 1 << 20  # the log rotates at 1 MiB, keeping BACKUPS old files
BACKUPS = 3
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating handler whose fresh files (after a rollover) are mode 0600 too."""

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def setup_logging(level: int | str = logging.INFO, path: Path | None = None) -> Path | None:
    """Send the ``voicetui`` loggers (and SDK warnings) to the log file; idempotent (a call
    with another path moves the handler there).

    Returns the log file path (created with mode 0600), or None when it cannot be written:
    then warnings and errors go to stderr instead, and nothing raises.
    """
    with _lock:
        root = logging.getLogger()
        try:
            target = path or paths.log_file()
        except OSError:
            target = None
        current = _installed.get("file")
        if (
            target is not None
            and isinstance(current, logging.FileHandler)
            and current.baseFilename == str(target.absolute())
        ):
            root.setLevel(level)
            return target
        if current is not None:
            # a different log file (another config/state dir): move over to it
            root.removeHandler(current)
            current.close()
            del _installed["file"]
        handler: logging.Handler
        try:
            if target is None:
                raise OSError("no state dir")
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
            handler = _PrivateRotatingHandler(
                target, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setLevel(logging.WARNING)
            target = None
        handler.setFormatter(RedactingFormatter(_FORMAT))
        root.addHandler(handler)
        root.setLevel(level)
        _installed["file"] = handler
    return target
