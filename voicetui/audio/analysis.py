"""Small signal measurements used by the audio self-tests and the benchmark.

Frequency, active span and similarity of recorded audio: enough to prove that what went
into a device came out with the right pitch, length and content.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]


def tone(freq: float, ms: float, rate: int = 24_000, amplitude: float = 0.5) -> Float32Array:
    """A sine tone (float32)."""
    t = np.arange(int(rate * ms / 1000)) / rate
    out: Float32Array = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return out


def dominant_frequency(x: npt.NDArray[np.floating], rate: int) -> float:
    """Frequency (Hz) of the strongest FFT bin, windowed."""
    if len(x) < 16:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


def active_span(
    x: npt.NDArray[np.floating], rate: int, threshold: float = 0.02, window_ms: float = 2.0
) -> tuple[float, float]:
    """(start_s, end_s) of the part whose short-window peak exceeds ``threshold``."""
    win = max(1, int(rate * window_ms / 1000))
    n = len(x) // win
    if n == 0:
        return 0.0, 0.0
    env = np.abs(x[: n * win]).reshape(n, win).max(axis=1)
    idx = np.nonzero(env > threshold)[0]
    if len(idx) == 0:
        return 0.0, 0.0
    return float(idx[0] * win / rate), float((idx[-1] + 1) * win / rate)


def tone_purity_db(
    x: npt.NDArray[np.floating], rate: int, freq: float, band_hz: float = 30.0
) -> float:
    """Energy near ``freq`` over the energy elsewhere, in dB (clicks and gaps lower it)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    near = spec[np.abs(freqs - freq) <= band_hz].sum()
    far = spec[np.abs(freqs - freq) > band_hz].sum() + 1e-20
    return float(10 * np.log10(near / far))


def max_normalized_xcorr(
    a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]
) -> tuple[float, int]:
    """Best normalised cross-correlation of ``a`` against ``b`` over all lags, and that lag
    (samples by which ``a`` is late)."""
    a = np.asarray(a, dtype=np.float64) - float(np.mean(a))
    b = np.asarray(b, dtype=np.float64) - float(np.mean(b))
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lag = int(np.argmax(np.abs(xc)))
    lag = lag if lag < n // 2 else lag - n
    if lag >= 0:
        ov_a, ov_b = a[lag:], b[: max(0, len(a) - lag)]
    else:
        ov_a, ov_b = a[: len(b) + lag], b[-lag:]
    m = min(len(ov_a), len(ov_b))
    if m == 0:
        return 0.0, lag
    ov_a, ov_b = ov_a[:m], ov_b[:m]
    denom = float(np.linalg.norm(ov_a) * np.linalg.norm(ov_b)) + 1e-12
    return float(np.dot(ov_a, ov_b)) / denom, lag
