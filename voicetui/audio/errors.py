"""Audio failures as values: one-line messages that say what to do, plus a stable code.

``AudioError`` is raised only from ``start()`` (and the synchronous checks); failures that
happen later (a device unplugged mid-session) are handed to an ``on_error`` callback on the
event loop instead, so the app keeps running and can tell the user.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class AudioErrorCode(StrEnum):
    """Why audio failed; the UI may pick a hint per code."""

    PORTAUDIO_MISSING = "portaudio_missing"
    NO_INPUT_DEVICE = "no_input_device"
    NO_OUTPUT_DEVICE = "no_output_device"
    DEVICE_NOT_FOUND = "device_not_found"
    UNSUPPORTED_RATE = "unsupported_rate"
    DEVICE_LOST = "device_lost"
    STREAM_ERROR = "stream_error"
    WAV_ERROR = "wav_error"


class AudioError(Exception):
    """An audio failure with a one-line, actionable message."""

    def __init__(self, message: str, code: AudioErrorCode | str = AudioErrorCode.STREAM_ERROR):
        # one line, always: the status bar and the CLI print it as is
        self.message = " ".join(message.split())
        self.code = AudioErrorCode(code)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"AudioError({self.message!r}, code={self.code.value!r})"


ErrorCallback = Callable[[AudioError], None]
"""Receives mid-session failures, always on the event loop thread."""

PORTAUDIO_HINT = "PortAudio not found: install libportaudio2 (apt-get install libportaudio2)"
