"""Streaming sample-rate conversion with soxr (device rate <-> the 24 kHz engine rate).

``soxr.ResampleStream`` keeps the filter state and the fractional phase between calls, so
blocks of any size come out seamless: partial samples are carried to the next block instead
of being rounded away (which would click every 20 ms and drift in duration).

Quality "LQ" is deliberate: soxr's "HQ" holds back ~30 ms inside the filter at 24->48 kHz,
which would add to every reply's latency; "LQ" holds 1-6 ms and is still far above what a
voice band needs (speech energy is below 8 kHz).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]

STREAM_QUALITY = "LQ"


class StreamResampler:
    """Mono float32 streaming resampler; a cheap pass-through when both rates are equal."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = STREAM_QUALITY) -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._quality = quality
        self._stream: object | None = None
        self._pending = False  # input went in since the last drain, so a tail may be held
        if self.in_rate != self.out_rate:
            self._stream = self._new_stream()

    @property
    def passthrough(self) -> bool:
        """True when no conversion happens."""
        return self._stream is None

    def _new_stream(self) -> object:
        import soxr

        return soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="float32", quality=self._quality
        )

    def process(self, block: Float32Array) -> Float32Array:
        """Convert one block; the output length varies by a sample or so between blocks."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        if self._stream is None:
            return x
        self._pending = True
        out: Float32Array = self._stream.resample_chunk(x)  # type: ignore[attr-defined]
        return out

    def drain(self) -> Float32Array:
        """Return the samples still held in the filter (end of a stream) and reset."""
        if self._stream is None or not self._pending:
            return np.zeros(0, dtype=np.float32)
        tail: Float32Array = self._stream.resample_chunk(  # type: ignore[attr-defined]
            np.zeros(0, dtype=np.float32), last=True
        )
        self._stream = self._new_stream()
        self._pending = False
        return tail

    def reset(self) -> None:
        """Forget held samples (after a flush)."""
        if self._stream is not None:
            self._stream = self._new_stream()
        self._pending = False


def resample_once(data: Float32Array, in_rate: int, out_rate: int) -> Float32Array:
    """Whole-signal conversion (WAV files), at soxr's high quality."""
    x = np.ascontiguousarray(data, dtype=np.float32)
    if in_rate == out_rate or len(x) == 0:
        return x
    import soxr

    out: Float32Array = soxr.resample(x, in_rate, out_rate, quality="HQ").astype(np.float32)
    return out


def to_float32(pcm: npt.NDArray[np.int16] | Float32Array) -> Float32Array:
    """int16 -> float32 in [-1, 1); float32 passes through (mono arrays)."""
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) * np.float32(1.0 / 32768.0)
    return np.ascontiguousarray(pcm, dtype=np.float32)


def to_int16(x: Float32Array) -> npt.NDArray[np.int16]:
    """float32 in [-1, 1] -> int16 with clipping."""
    out: npt.NDArray[np.int16] = np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16)
    return out
