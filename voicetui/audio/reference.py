"""The speaker reference: what the speaker really played, and when, for echo measurement.

The output callback hands every block it writes (zeros included, so the timeline has no
holes) to :meth:`SpeakerReference.write` with the time its first sample reaches the DAC.
The loop side reads back the samples that were audible during any interval of the monotonic
clock (:meth:`segment`), at the engine rate. The echo gate correlates them with the
microphone; the echo canceller uses them as its far-end signal.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import numpy.typing as npt

from voicetui.audio.level import SILENCE_DBFS, rms_dbfs_float
from voicetui.audio.ports import ENGINE_RATE

Float32Array = npt.NDArray[np.float32]
SETTLE_BLOCKS = 20  # output callbacks (200 ms at 10 ms blocks) before the clock is trusted


class SpeakerReference:
    """A ring of the last ``seconds`` of speaker output (device rate), anchored in time."""

    def __init__(self, seconds: float = 4.0) -> None:
        self.seconds = seconds
        self.rate = 0
        self._ring: Float32Array = np.zeros(0, dtype=np.float32)
        self._written = 0  # samples written since the start (index of the next one)
        self._offset: float | None = None  # monotonic time of sample 0 (smoothed, see write)
        self._writes = 0
        self._lock = threading.Lock()

    def write(self, block: Float32Array, rate: int, dac_time: float) -> None:
        """Append one output block (audio thread; a copy into the ring, nothing else)."""
        n = len(block)
        with self._lock:
            if rate != self.rate:
                self.rate = rate
                self._ring = np.zeros(max(int(rate * self.seconds), n), dtype=np.float32)
                self._written = 0
                self._writes = 0
                self._offset = None
            size = len(self._ring)
            start = self._written % size
            first = min(n, size - start)
            self._ring[start : start + first] = block[:first]
            if first < n:
                self._ring[: n - first] = block[first:n]
            # the callback's clock reading jitters by the scheduler's delay: the earliest
            # (least delayed) reading is the truest, so follow drops at once and rises slowly
            offset = dac_time - self._written / rate
            self._writes += 1
            # the first callbacks prefill the device buffer in a burst: their clock readings
            # say nothing about when their samples play, so they only seed the estimate
            if self._offset is None or self._writes <= SETTLE_BLOCKS or offset < self._offset:
                self._offset = offset
            else:
                self._offset += 0.02 * (offset - self._offset)
            self._written += n

    def time_of(self, index: int) -> float | None:
        """Monotonic time at which sample ``index`` was (or will be) audible."""
        with self._lock:
            if self._offset is None or not self.rate:
                return None
            return self._offset + index / self.rate

    def loudest_dbfs(self, t0: float, t1: float, block_s: float = 0.02) -> float:
        """Loudest ``block_s`` RMS level (dBFS) of what was audible between ``t0`` and ``t1``."""
        raw = self._raw(t0, t1)
        if raw is None or not len(raw[0]):
            return SILENCE_DBFS
        x, rate = raw
        step = max(int(block_s * rate), 1)
        usable = len(x) // step * step
        if not usable:
            return rms_dbfs_float(x)
        mean_sq = float(np.max(np.mean(x[:usable].reshape(-1, step) ** 2, axis=1)))
        return rms_dbfs_float(np.array([np.sqrt(mean_sq)], dtype=np.float32))

    def segment(self, t0: float, t1: float) -> Float32Array | None:
        """The speaker signal audible between ``t0`` and ``t1`` at :data:`ENGINE_RATE`;
        zeros where nothing was written yet; None before the first block."""
        raw = self._raw(t0, t1)
        if raw is None:
            return None
        out, rate = raw
        if rate == ENGINE_RATE or not len(out):
            return out
        import soxr

        res: Float32Array = soxr.resample(out, rate, ENGINE_RATE, quality="LQ").astype(
            np.float32, copy=False
        )
        return res

    def index_at(self, t: float) -> int | None:
        """The index of the sample audible at time ``t`` (None before the first block)."""
        with self._lock:
            if self._offset is None or not self.rate:
                return None
            return math.floor((t - self._offset) * self.rate)

    def read(self, index: int, n: int) -> Float32Array:
        """Samples ``index`` .. ``index + n`` at the device rate; zeros where the ring has
        none (not written yet, or already overwritten)."""
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            size = len(self._ring)
            lo, hi = max(index, self._written - size, 0), min(index + n, self._written)
            if hi > lo:
                out[lo - index : hi - index] = self._ring[np.arange(lo, hi) % size]
        return out

    def segment_at(self, t0: float, t1: float, rate: int, n: int) -> Float32Array:
        """Exactly ``n`` samples at ``rate`` of what was audible between ``t0`` and ``t1``
        (zeros before the first block): the echo canceller's far-end chunks."""
        raw = self._raw(t0, t1)
        if raw is None or not len(raw[0]):
            return np.zeros(n, dtype=np.float32)
        x, src_rate = raw
        if src_rate == rate and len(x) == n:
            return x
        # 10 ms chunks: linear interpolation is plenty for a far-end reference
        pos = np.linspace(0, len(x) - 1, n)
        out: Float32Array = np.interp(pos, np.arange(len(x)), x).astype(np.float32)
        return out

    def _raw(self, t0: float, t1: float) -> tuple[Float32Array, int] | None:
        with self._lock:
            if self._offset is None or not self.rate:
                return None
            rate, size = self.rate, len(self._ring)
            i0 = math.floor((t0 - self._offset) * rate)
            i1 = math.floor((t1 - self._offset) * rate)
            out = np.zeros(max(i1 - i0, 0), dtype=np.float32)
            lo, hi = max(i0, self._written - size, 0), min(i1, self._written)
            if hi > lo:
                idx = np.arange(lo, hi) % size
                out[lo - i0 : hi - i0] = self._ring[idx]
        return out, rate
