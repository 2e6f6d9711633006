"""Signal levels in dBFS (full scale = 0 dB) for meters and the echo gate."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

SILENCE_DBFS = -120.0
"""The floor reported for digital silence (log of zero is -inf, meters want a number)."""

_INT16_FULL = 32768.0


def _to_db(value: float) -> float:
    if value <= 1e-6:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(value))


def rms_peak_dbfs(pcm: npt.NDArray[np.int16] | npt.NDArray[np.float32]) -> tuple[float, float]:
    """RMS and peak of a mono block, both in dBFS; int16 is scaled by 32768, float32 is as is."""
    if len(pcm) == 0:
        return SILENCE_DBFS, SILENCE_DBFS
    x = pcm.astype(np.float32)
    scale = _INT16_FULL if pcm.dtype == np.int16 else 1.0
    # np.dot is one pass without a temporary the size of the block (cheap enough for a callback)
    mean_sq = float(np.dot(x, x)) / len(x)
    peak = float(np.max(np.abs(x)))
    return _to_db(math.sqrt(mean_sq) / scale), _to_db(peak / scale)


def rms_dbfs_float(block: npt.NDArray[np.float32]) -> float:
    """RMS of a float32 block in dBFS without allocating (used inside the output callback)."""
    n = len(block)
    if n == 0:
        return SILENCE_DBFS
    return _to_db(math.sqrt(float(np.dot(block, block)) / n))
