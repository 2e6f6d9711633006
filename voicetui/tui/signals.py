"""Console signal handling: SIGTERM, SIGHUP and SIGINT end the app cleanly.

Each ends the session first (the reply is cut, ``SessionEnded`` reaches the transcript,
devices and sockets close), then exits through Textual, which restores the terminal
(alternate screen and mouse modes off). Exit codes follow the shell's 128 + signal:
SIGINT 130, SIGHUP 129, SIGTERM 143. Handlers run on the event loop
(``loop.add_signal_handler``), never inside a random frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

EXIT_CODES: dict[signal.Signals, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
if hasattr(signal, "SIGHUP"):  # not on Windows
    EXIT_CODES[signal.SIGHUP] = 129
REASONS = {
    signal.SIGINT: "interrupted (SIGINT)",
    signal.SIGTERM: "terminated (SIGTERM)",
}
if hasattr(signal, "SIGHUP"):
    REASONS[signal.SIGHUP] = "the terminal went away (SIGHUP)"


def install(on_signal: Callable[[str, int], None]) -> Callable[[], None]:
    """Call ``on_signal(reason, exit_code)`` on the running loop for each signal above;
    returns a function that removes the handlers. Where the loop cannot install them
    (Windows, not the main thread) nothing is installed."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig, code in EXIT_CODES.items():
        try:
            loop.add_signal_handler(sig, on_signal, REASONS[sig], code)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)

    def remove() -> None:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    return remove
