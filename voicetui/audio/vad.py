"""Local voice activity detection and a small turn detector built on it.

webrtcvad (``webrtcvad-wheels``): a GMM detector from WebRTC, a few tens of microseconds per
20 ms frame, deterministic, no model download and no torch/onnx runtime. Silero VAD is more
accurate in noise but needs onnxruntime or torch (tens to hundreds of MB) and a model file;
for barge-in gating and end-of-turn on a desktop mic, webrtcvad is the right trade.

webrtcvad accepts 8/16/32/48 kHz only, not our 24 kHz. Frames are decimated 3:1 to 8 kHz (the
detector's native rate, ~15x cheaper than feeding it 48 kHz) after a 3-tap average, a crude
anti-alias filter with its first null at 8 kHz; the detector only looks below 4 kHz anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Int16Array

VAD_FRAME_MS = (10, 20, 30)


class Vad:
    """Speech / no speech for mono int16 frames at :data:`ENGINE_RATE` (10, 20 or 30 ms)."""

    def __init__(self, mode: int = 2, min_level_dbfs: float = -60.0) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(mode)
        # below this level a frame is silence whatever the GMM says (it fires on faint noise)
        self.min_level_dbfs = min_level_dbfs

    def is_speech(self, frame: Int16Array, level_dbfs: float | None = None) -> bool:
        """Classify one frame; its length must be 10, 20 or 30 ms at 24 kHz."""
        if level_dbfs is not None and level_dbfs < self.min_level_dbfs:
            return False
        n = len(frame) // 3 * 3
        low = frame[:n].reshape(-1, 3).mean(axis=1, dtype=np.float32).astype(np.int16)
        return bool(self._vad.is_speech(low.tobytes(), ENGINE_RATE // 3))

    def classify_block(self, block: Int16Array, level_dbfs: float | None = None) -> bool | None:
        """Any speech in a block made of 10/20/30 ms frames; None if the length does not fit."""
        if level_dbfs is not None and level_dbfs < self.min_level_dbfs:
            return False
        n = len(block)
        for ms in (20, 30, 10):
            size = ENGINE_RATE * ms // 1000
            if n % size == 0 and n:
                return any(self.is_speech(block[i : i + size]) for i in range(0, n, size))
        return None


class TurnEvent(StrEnum):
    """What :class:`LocalTurnDetector` reports."""

    SPEECH_STARTED = "speech_started"
    SPEECH_STOPPED = "speech_stopped"


@dataclass
class LocalTurnDetector:
    """Speech start/end from per-frame VAD verdicts plus a hangover.

    For providers without server VAD (Mistral's realtime STT never ends a turn by itself):
    speech starts after ``start_ms`` of consecutive speech frames, and stops after
    ``end_silence_ms`` of consecutive non-speech frames.
    """

    start_ms: float = 60.0
    end_silence_ms: float = 500.0
    min_level_dbfs: float = SILENCE_DBFS
    in_speech: bool = field(default=False, init=False)
    _speech_run: float = field(default=0.0, init=False, repr=False)
    _silence_run: float = field(default=0.0, init=False, repr=False)

    def update(self, frame: CaptureFrame) -> TurnEvent | None:
        """Feed one frame; return an event when the state changes."""
        speech = bool(frame.speech) and frame.rms_dbfs >= self.min_level_dbfs
        return self.update_raw(speech, frame.duration_ms)

    def update_raw(self, speech: bool, duration_ms: float) -> TurnEvent | None:
        """Same as :meth:`update` from a bare verdict and duration."""
        if speech:
            self._speech_run += duration_ms
            self._silence_run = 0.0
        else:
            self._silence_run += duration_ms
            self._speech_run = 0.0
        if not self.in_speech and self._speech_run >= self.start_ms:
            self.in_speech = True
            return TurnEvent.SPEECH_STARTED
        if self.in_speech and self._silence_run >= self.end_silence_ms:
            self.in_speech = False
            return TurnEvent.SPEECH_STOPPED
        return None

    def reset(self) -> None:
        """Forget the current state (a new turn)."""
        self.in_speech = False
        self._speech_run = 0.0
        self._silence_run = 0.0
