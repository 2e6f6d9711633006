"""Keep native libraries from scribbling over the full-screen app.

ALSA (through PortAudio), and other C libraries, write diagnostics straight to file
descriptor 2. In a full-screen terminal app those bytes land in the middle of the UI. While
:func:`stderr_to_log` is active, fd 2 points at the log file, and ``sys.__stderr__`` (which
Textual's Linux driver renders to) is a new stream on a duplicate of the *original* fd 2, so
the UI still reaches the terminal. Everything is restored on exit, in reverse order.

Create the Textual ``App`` inside the guard: its driver captures ``sys.__stderr__`` then.
Set ``VOICETUI_NO_STDERR_GUARD=1`` to disable (debugging a crash that happens at start-up).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from voicetui import paths


@contextlib.contextmanager
def stderr_to_log(log_path: Path | None = None) -> Iterator[TextIO]:
    """Point fd 2 at ``log_path`` (default: the app log) for the duration of the block.

    Yields the stream that still reaches the terminal (also installed as
    ``sys.__stderr__``). Python-level ``sys.stderr`` writes go to the log as well, as long as
    ``sys.stderr`` is the interpreter's own stream.
    """
    original = sys.__stderr__
    if os.environ.get("VOICETUI_NO_STDERR_GUARD") == "1" or original is None:
        yield original if original is not None else sys.stderr
        return
    try:
        path = log_path if log_path is not None else paths.log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:  # unwritable log dir: leave fd 2 alone rather than fail to start
        yield original
        return
    try:
        saved_fd = os.dup(2)
    except OSError:  # fd 2 closed (daemonised, odd launcher): nothing to protect
        os.close(log_fd)
        yield original
        return
    with contextlib.suppress(Exception):
        sys.stderr.flush()
        original.flush()
    terminal = os.fdopen(
        saved_fd,
        "w",
        buffering=1,
        encoding=getattr(original, "encoding", None) or "utf-8",
        errors="replace",
        closefd=False,
    )
    try:
        os.dup2(log_fd, 2)
    finally:
        os.close(log_fd)
    setattr(sys, "__stderr__", terminal)  # noqa: B010 - typeshed marks it Final
    try:
        yield terminal
    finally:
        with contextlib.suppress(Exception):
            terminal.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved_fd, 2)
        setattr(sys, "__stderr__", original)  # noqa: B010
        terminal.close()
        os.close(saved_fd)
