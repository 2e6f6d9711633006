"""Turns 24 kHz int16 audio into :class:`CaptureFrame` s: exact blocks, level, VAD, pre-roll.

Shared by the device microphone and the WAV microphone, so both yield identical frames.
Runs on the event loop, never in the audio callback.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from voicetui.audio.level import SILENCE_DBFS, rms_peak_dbfs
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Int16Array
from voicetui.audio.vad import Vad


class FrameBuilder:
    """Re-blocks a stream of samples into ``block_ms`` frames and annotates them."""

    def __init__(
        self, block_ms: float = 20.0, preroll_ms: float = 300.0, vad: Vad | None = None
    ) -> None:
        self.block = max(1, int(ENGINE_RATE * block_ms / 1000))
        self._vad = vad
        self._carry = np.zeros(0, dtype=np.int16)
        keep = max(1, int(np.ceil(preroll_ms / (self.block * 1000 / ENGINE_RATE))))
        self._preroll: deque[Int16Array] = deque(maxlen=keep)
        self.level_dbfs = SILENCE_DBFS
        self.peak_dbfs = SILENCE_DBFS
        self.speech: bool | None = None

    def feed(self, pcm: Int16Array, now: float) -> list[CaptureFrame]:
        """Add samples; return the complete frames they finish (usually exactly one)."""
        if len(self._carry):
            pcm = np.concatenate((self._carry, pcm))
        frames: list[CaptureFrame] = []
        n_full = len(pcm) // self.block * self.block
        whole = n_full == len(pcm) and not len(self._carry)
        for start in range(0, n_full, self.block):
            # a block that is the caller's whole array is not copied (the callback copied it)
            block = (
                pcm if whole and n_full == self.block else pcm[start : start + self.block].copy()
            )
            rms, peak = rms_peak_dbfs(block)
            speech = self._vad.classify_block(block, rms) if self._vad is not None else None
            self.level_dbfs, self.peak_dbfs, self.speech = rms, peak, speech
            self._preroll.append(block)
            frames.append(CaptureFrame(block, now, rms, peak, speech))
        self._carry = pcm[n_full:].copy()
        return frames

    def preroll(self, ms: float | None = None) -> Int16Array:
        """The most recent ``ms`` (default: all kept) of audio, oldest first."""
        if not self._preroll:
            return np.zeros(0, dtype=np.int16)
        audio = np.concatenate(list(self._preroll))
        if ms is not None:
            audio = audio[-int(ENGINE_RATE * ms / 1000) :] if ms > 0 else audio[:0]
        return audio
