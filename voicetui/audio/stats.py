"""A fixed-size ring of float samples, cheap enough to feed from an audio callback."""

from __future__ import annotations

import numpy as np


class SampleRing:
    """Keeps the last ``capacity`` values (seconds, ms, ...) without allocating per sample."""

    def __init__(self, capacity: int = 8192) -> None:
        self._data = np.zeros(capacity, dtype=np.float64)
        self._i = 0
        self._n = 0

    def record(self, value: float) -> None:
        """Add one sample (audio-thread safe enough: a torn read only skews one sample)."""
        i = self._i
        self._data[i] = value
        self._i = (i + 1) % len(self._data)
        if self._n < len(self._data):
            self._n += 1

    def values(self) -> np.ndarray:
        """A copy of the samples kept (oldest order is not preserved)."""
        return self._data[: self._n].copy()

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100), NaN when empty."""
        if self._n == 0:
            return float("nan")
        return float(np.percentile(self._data[: self._n], q))

    def __len__(self) -> int:
        return self._n

    def clear(self) -> None:
        self._i = 0
        self._n = 0
