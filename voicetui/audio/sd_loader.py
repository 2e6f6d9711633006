"""Lazy, guarded access to ``sounddevice`` (PortAudio).

``import sounddevice`` raises ``OSError`` when the PortAudio shared library is missing, and it
scans the ALSA devices exactly once, at import. Everything in voicetui goes through
:func:`load_sounddevice` so a missing library becomes an :class:`AudioError` with the package
to install, and through :func:`rescan` to see devices that appeared after start-up.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from voicetui.audio.errors import PORTAUDIO_HINT, AudioError, AudioErrorCode

_lock = threading.Lock()
_cache: dict[str, ModuleType] = {}


def load_sounddevice() -> ModuleType:
    """Import sounddevice once; raise :class:`AudioError` (portaudio_missing) if it cannot load."""
    with _lock:
        cached = _cache.get("sd")
        if cached is not None:
            return cached
        try:
            import sounddevice
        except OSError as exc:  # "PortAudio library not found"
            raise AudioError(PORTAUDIO_HINT, AudioErrorCode.PORTAUDIO_MISSING) from exc
        module: ModuleType = sounddevice
        _cache["sd"] = module
        return module


def rescan() -> None:
    """Make PortAudio scan the host's devices again (hot-plug, a sound server started late).

    Only safe while no stream of ours is open: PortAudio terminates and re-initialises.
    """
    sd = load_sounddevice()
    with _lock:
        sd._terminate()
        sd._initialize()


def portaudio_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions PortAudio calls may raise (``PortAudioError`` and device-lookup errors)."""
    sd = load_sounddevice()
    err: Any = sd.PortAudioError
    return (err, ValueError)
