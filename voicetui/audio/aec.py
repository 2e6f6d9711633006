"""Acoustic echo cancellation: WebRTC's audio processing module on the microphone.

The module is the one in LiveKit's Python SDK (``livekit.rtc.AudioProcessingModule``: WebRTC
AEC3 + noise suppression + high-pass, prebuilt wheels, maintained), imported only when the
``aec`` policy is in use (the import costs ~0.3 s). The far-end reference is what the speaker
really played (:class:`~voicetui.audio.reference.SpeakerReference`), taken on the mic's own
clock: for each mic frame, the speaker signal of the same interval goes to
``process_reverse_stream`` just before the frame goes through ``process_stream``, so the
reference always precedes its echo; ``set_stream_delay_ms`` tells AEC3 the device latencies
and it finds the acoustic delay itself. :class:`EchoCancelledInput` wraps a microphone so
that everything downstream (gate, provider, meters) sees the cleaned signal.

Where there is no echo path (headphones; the test sandbox), AEC3 never sees an echo to learn
from, so it keeps its start-up assumption of an echo path of default strength and suppresses
whatever the mic hears while the speaker plays: the user's first barge-in of a session is
cut by 25-80 dB (until the double talk itself teaches AEC3 that nothing comes back). So the
wrapper hands on the raw microphone while the gate has *measured* no echo path
(``passthrough``); the canceller keeps running on every frame, so it is adapted if an echo
path appears (the gate measures it and the cleaned signal is used again).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import numpy as np

from voicetui.audio.level import rms_peak_dbfs
from voicetui.audio.ports import ENGINE_RATE, AudioInput, CaptureFrame, Int16Array
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.resample import to_int16
from voicetui.audio.vad import Vad

log = logging.getLogger(__name__)

APM_RATE = 48_000  # a native rate of the module: no resampling inside it
CHUNK_S = 0.010  # the module takes exactly 10 ms per call


@functools.cache
def aec_unavailable_reason() -> str | None:
    """Why the WebRTC module cannot be imported and built here; None if it can. Asked once
    per process (every rig of the default ``aec`` policy asks)."""
    try:
        _new_apm()
    except Exception as exc:  # ImportError, a missing native library, an FFI failure
        return f"{type(exc).__name__}: {exc}"
    return None


def aec_available() -> bool:
    """True if the WebRTC module can be imported and built here."""
    return aec_unavailable_reason() is None


def _new_apm() -> Any:
    from livekit import rtc

    return rtc.AudioProcessingModule(
        echo_cancellation=True, noise_suppression=True, high_pass_filter=True
    )


class EchoCanceller:
    """Cancels the speaker's echo from mic frames (all on the event loop)."""

    def __init__(self, reference: SpeakerReference, stream_delay_ms: int = 0) -> None:
        from livekit import rtc

        self._rtc = rtc
        self.reference = reference
        self._apm = _new_apm()
        self._apm.set_stream_delay_ms(int(stream_delay_ms))
        self._delay_ms = int(stream_delay_ms)
        self._mic_written = 0
        self._mic_offset: float | None = None
        self._chunk = int(APM_RATE * CHUNK_S)
        self._pending = np.zeros(0, dtype=np.float32)  # 48 kHz mic not yet processed
        self._out = np.zeros(0, dtype=np.float32)  # processed mic at 24 kHz, not yet handed out
        self._far_index: int | None = None  # next speaker sample (device rate) to feed
        self._up: Any = None
        self._down: Any = None

    def set_stream_delay_ms(self, delay_ms: int) -> None:
        """The device latencies (render + capture) as far as known."""
        self._delay_ms = int(delay_ms)

    def process(self, frame: CaptureFrame) -> Int16Array:
        """The frame's samples with the echo removed (same length; the first call after
        start returns up to 10 ms of silence while the first chunk fills)."""
        import soxr

        pcm = frame.pcm.astype(np.float32) / 32768.0
        n = len(pcm)
        self._mic_written += n
        offset = frame.captured_at - self._mic_written / ENGINE_RATE
        if self._mic_offset is None or offset < self._mic_offset:
            self._mic_offset = offset
        else:
            self._mic_offset += 0.02 * (offset - self._mic_offset)
        if self._up is None:
            self._up = soxr.ResampleStream(ENGINE_RATE, APM_RATE, 1, dtype="float32", quality="LQ")
            self._down = soxr.ResampleStream(
                APM_RATE, ENGINE_RATE, 1, dtype="float32", quality="LQ"
            )
        self._pending = np.concatenate((self._pending, self._up.resample_chunk(pcm)))
        # the pending 48 kHz samples end at the frame's end on the mic clock
        t_end = self._mic_offset + self._mic_written / ENGINE_RATE
        done: list[np.ndarray] = []
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            t1 = t_end - len(self._pending) / APM_RATE
            self._feed_far_end(t1)
            self._apm.set_stream_delay_ms(self._delay_ms)  # required before every call
            near = self._frame(chunk)
            self._apm.process_stream(near)
            done.append(np.frombuffer(near.data, dtype=np.int16).astype(np.float32) / 32768.0)
        if done:
            self._out = np.concatenate((self._out, self._down.resample_chunk(np.concatenate(done))))
        if len(self._out) < n:  # start-up: pad in front (once)
            self._out = np.concatenate((np.zeros(n - len(self._out), dtype=np.float32), self._out))
        out, self._out = self._out[:n], self._out[n:]
        return to_int16(out)

    def _feed_far_end(self, t1: float) -> None:
        """Every 10 ms of speaker signal audible up to ``t1``, in order and without gaps or
        overlaps: the clocks' jitter only moves *when* a chunk is fed, never what it holds,
        so AEC3's filter stays aligned (it absorbs the timing jitter in its render buffer)."""
        ref = self.reference
        end = ref.index_at(t1)
        rate = ref.rate
        if end is None or not rate:
            return
        step = max(rate // 100, 1)
        if self._far_index is None or end - self._far_index > rate:  # start, or a stall
            self._far_index = end - step
        while self._far_index + step <= end:
            far = ref.read(self._far_index, step)
            self._far_index += step
            if step != self._chunk:  # another device rate: to the module's 48 kHz
                pos = np.linspace(0, step - 1, self._chunk)
                far = np.interp(pos, np.arange(step), far).astype(np.float32)
            self._apm.process_reverse_stream(self._frame(far))

    def _frame(self, samples: np.ndarray) -> Any:
        data = to_int16(samples.astype(np.float32, copy=False)).tobytes()
        return self._rtc.AudioFrame(data, APM_RATE, 1, len(samples))


class EchoCancelledInput:
    """:class:`~voicetui.audio.ports.AudioInput` whose frames have the echo removed; the raw
    level of the latest frame stays available as ``raw_level_dbfs`` (ERLE, calibration)."""

    def __init__(
        self,
        inner: Any,
        canceller: EchoCanceller,
        vad_mode: int = 2,
        on_raw: Callable[[CaptureFrame], None] | None = None,
        passthrough: Callable[[], bool] | None = None,
    ) -> None:
        self.inner = inner
        self.canceller = canceller
        self.on_raw = on_raw  # the gate measures the echo path on the raw mic
        # True while the raw mic is to be handed on (the gate measured no echo path)
        self.passthrough = passthrough
        self._vad = Vad(vad_mode)
        self.raw_level_dbfs = -120.0
        self._level = -120.0

    def __getattr__(self, name: str) -> Any:  # device extras (latency, overflows, ...)
        return getattr(self.inner, name)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    def set_on_error(self, callback: Any) -> None:
        self.inner.set_on_error(callback)

    async def frames(self) -> AsyncIterator[CaptureFrame]:
        """The inner microphone's frames, echo cancelled, levels and VAD recomputed (raw
        while ``passthrough`` says there is no echo to cancel)."""
        async for frame in self.inner.frames():
            self.raw_level_dbfs = frame.rms_dbfs
            if self.on_raw is not None:
                self.on_raw(frame)
            clean = self.canceller.process(frame)  # always: AEC3 stays adapted and in step
            if self.passthrough is not None and self.passthrough():
                self._level = frame.rms_dbfs
                yield frame
                continue
            rms, peak = rms_peak_dbfs(clean)
            self._level = rms
            speech = self._vad.classify_block(clean, rms) if frame.speech is not None else None
            yield replace(frame, pcm=clean, rms_dbfs=rms, peak_dbfs=peak, speech=speech)

    @property
    def level_dbfs(self) -> float:
        return self._level


def wrap(
    inner: AudioInput,
    reference: SpeakerReference,
    stream_delay_ms: int,
    passthrough: Callable[[], bool] | None = None,
) -> AudioInput:
    """``inner`` behind an echo canceller fed by ``reference``."""
    canceller = EchoCanceller(reference, stream_delay_ms)
    wrapped: AudioInput = EchoCancelledInput(inner, canceller, passthrough=passthrough)
    return wrapped
