"""Managed keys: a provider's API key read from a secret manager's command (``apiKeyCommand``).

``apiKeyCommand = ["op", "read", "op://vault/mistral/key"]`` in a provider table is an argv
list, run without a shell when a session or a check needs the key: its stdout (trailing
newline stripped) is the key. The key stays in this process's memory only — never written,
never logged (registered for redaction the moment it is read), never passed to another
command. A failing command is one line naming the program, its exit status and the first
line of its stderr, never the key.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
from collections.abc import Sequence

from voicetui import logs

TIMEOUT_S = 10.0
MAX_OUTPUT = 64 * 1024  # a key is short; a command printing a whole file is a mistake


class KeyCommandFailed(RuntimeError):
    """The command did not produce a key. ``str()`` is one line; it never contains a key."""


def _program(argv: Sequence[str]) -> str:
    return argv[0] if argv else "?"


def parse_key_command(text: str) -> list[str]:
    """``apiKeyCommand`` from what a user typed shell-style (``op read op://vault/x/key``).
    Only split and unquoted, never run by a shell. Raises ``ValueError`` with one line (it
    never quotes the text: a pasted key could be in it)."""
    try:
        argv = shlex.split(text)
    except ValueError as err:  # "No closing quotation", "No escaped character"
        reason = str(err).lower().rstrip(".")
        raise ValueError(f"the command does not parse ({reason})") from None
    if not argv:
        raise ValueError("the command is empty: give the program and its arguments")
    if any(not arg for arg in argv):
        raise ValueError("the command has an empty argument ('' is not allowed)")
    return argv


def format_key_command(argv: Sequence[str]) -> str:
    """``argv`` as the shell-quoted line :func:`parse_key_command` reads back."""
    return shlex.join(argv)


def run_key_command(argv: Sequence[str], timeout_s: float = TIMEOUT_S) -> str:
    """Run ``argv`` (no shell, no stdin) and return its stdout without the trailing newline.
    Raises :class:`KeyCommandFailed` with one line when it fails, times out or prints
    nothing usable."""
    argv = [str(a) for a in argv]
    if not argv:
        raise KeyCommandFailed("apiKeyCommand is empty: give the program and its arguments")
    name = _program(argv)
    try:
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        raise KeyCommandFailed(f"apiKeyCommand: program {name!r} not found") from None
    except PermissionError:
        raise KeyCommandFailed(f"apiKeyCommand: program {name!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise KeyCommandFailed(
            f"apiKeyCommand {name!r} did not finish within {timeout_s:g} s"
        ) from None
    out = proc.stdout[:MAX_OUTPUT].decode("utf-8", "replace")
    key = out.rstrip("\r\n")
    if key:
        logs.register_secret(key)  # before anything could print it
        logs.register_secret(key.strip())
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        first = logs.redact(err[0].strip())[:160] if err else ""
        if key and key.strip() and key.strip() in first:
            first = first.replace(key.strip(), "****")
        tail = f": {first}" if first else ""
        raise KeyCommandFailed(
            f"apiKeyCommand {name!r} failed with exit status {proc.returncode}{tail}"
        )
    if not key.strip():
        raise KeyCommandFailed(f"apiKeyCommand {name!r} printed no key on its standard output")
    if "\n" in key.strip():
        raise KeyCommandFailed(f"apiKeyCommand {name!r} printed more than one line")
    return key.strip()


class KeyCommandCache:
    """Keys read from commands, in memory, per provider; :meth:`refresh` runs it again
    (after the service rejected the key once: it may have been rotated)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}
        self._lock = threading.Lock()

    def get(self, provider: str, argv: Sequence[str]) -> str:
        """The key for ``provider`` from ``argv`` (run on first use only)."""
        slot = (provider, tuple(argv))
        with self._lock:
            cached = self._keys.get(slot)
        if cached is not None:
            return cached
        key = run_key_command(argv)
        with self._lock:
            self._keys[slot] = key
        return key

    def refresh(self, provider: str, argv: Sequence[str]) -> str:
        """Forget the cached key and run the command again."""
        with self._lock:
            self._keys.pop((provider, tuple(argv)), None)
        return self.get(provider, argv)
