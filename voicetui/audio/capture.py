"""The device microphone: a callback-driven PortAudio input stream handed to asyncio.

The callback copies the block and schedules it on the event loop with
``loop.call_soon_threadsafe``: no polling, no busy loop, nothing heavy on the audio thread.
Resampling to 24 kHz, levels, VAD and the pre-roll ring all run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from voicetui.audio.framing import FrameBuilder
from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Int16Array
from voicetui.audio.resample import StreamResampler, to_int16
from voicetui.audio.sd_loader import load_sounddevice
from voicetui.audio.stats import SampleRing
from voicetui.audio.stream import DeviceStream
from voicetui.audio.vad import Vad

_END = None  # queue sentinel


class DeviceInput(DeviceStream):
    """:class:`~voicetui.audio.ports.AudioInput` on a real microphone."""

    KIND = "input"
    LABEL = "microphone"

    def __init__(
        self,
        device: str | None = None,
        *,
        block_ms: float = 20.0,
        preroll_ms: float = 300.0,
        device_rate: int | None = None,
        channels: int | None = None,
        vad_mode: int | None = 2,
        max_queued_frames: int = 500,
        latency: str | float = "low",
    ) -> None:
        super().__init__(
            device, block_ms=block_ms, device_rate=device_rate, channels=channels, latency=latency
        )
        self.overflows = 0
        self.dropped_frames = 0  # frames dropped because nobody consumed them
        self.queue_latency_s = SampleRing()  # callback -> frame on the loop, for the benchmark
        self.process_s = SampleRing()  # loop-side work per block (resample, level, VAD)
        self._builder = FrameBuilder(
            block_ms, preroll_ms, Vad(vad_mode) if vad_mode is not None else None
        )
        self._resampler = StreamResampler(ENGINE_RATE, ENGINE_RATE)
        self._queue: asyncio.Queue[CaptureFrame | None] = asyncio.Queue(max_queued_frames)
        self._zero_since: float | None = None
        self._last_block_at = 0.0

    async def start(self) -> None:
        """Open and start the stream; raise :class:`AudioError` if that is impossible."""
        if self._stream is not None:
            return
        sd = load_sounddevice()
        dev = self._negotiate()
        self._resampler = StreamResampler(self.rate, ENGINE_RATE)
        self._queue = asyncio.Queue(self._queue.maxsize)  # a restart must not see the old end
        # at the engine rate the device hands over int16 directly: no conversion at all
        dtype = "int16" if self._resampler.passthrough else "float32"
        await self._open_async(sd.InputStream, dev, dtype, self._callback)

    async def stop(self) -> None:
        """Stop the stream and end :meth:`frames` (idempotent)."""
        await self._close()
        self._put(_END)

    async def frames(self) -> AsyncIterator[CaptureFrame]:
        """Frames in capture order until :meth:`stop` (or the device is lost)."""
        while True:
            frame = await self._queue.get()
            if frame is None:
                return
            yield frame

    def preroll(self, ms: float | None = None) -> Int16Array:
        """The last ``ms`` (default all, ~300 ms) of captured audio, to prepend to a turn so
        its first syllable is never cut."""
        return self._builder.preroll(ms)

    @property
    def level_dbfs(self) -> float:
        """RMS level of the latest block."""
        return self._builder.level_dbfs if self._stream is not None else SILENCE_DBFS

    @property
    def peak_dbfs(self) -> float:
        return self._builder.peak_dbfs

    @property
    def digital_silence_s(self) -> float:
        """Seconds of exact zeros up to the latest block. A real microphone always hisses;
        long digital silence means a muted or permission-blocked input (macOS gives zeros,
        not an error, to a terminal that was never granted the microphone)."""
        if self._zero_since is None or self._stream is None:
            return 0.0
        return max(0.0, self._last_block_at - self._zero_since)

    @property
    def speech(self) -> bool | None:
        """Local VAD verdict of the latest block."""
        return self._builder.speech

    # ------------------------------------------------------------------ audio thread
    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        self._last_callback = now
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed under an open stream: drop
                loop.call_soon_threadsafe(
                    self._on_block, indata[:, 0].copy(), now, bool(status.input_overflow)
                )

    # ------------------------------------------------------------------ loop side
    def _on_block(self, block: np.ndarray, t_callback: float, overflow: bool) -> None:
        if self._stopping or self._failed:
            return
        now = time.monotonic()
        self.queue_latency_s.record(now - t_callback)
        if overflow:
            self.overflows += 1
        if block.any():
            self._zero_since = None
        elif self._zero_since is None:
            self._zero_since = t_callback
        self._last_block_at = t_callback
        pcm = block if block.dtype == np.int16 else to_int16(self._resampler.process(block))
        for frame in self._builder.feed(pcm, now):
            self._put(frame)
        self.process_s.record(time.monotonic() - now)

    def _put(self, frame: CaptureFrame | None) -> None:
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            # nobody reads (idle session): keep the newest audio, drop the oldest
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped_frames += 1
            self._queue.put_nowait(frame)

    def _on_failed(self) -> None:
        self._put(_END)  # end frames(): the engine learns of the loss from on_error
