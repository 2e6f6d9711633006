"""The device microphone: a callback-driven PortAudio input stream handed to asyncio.

The callback copies the block and schedules it on the event loop with
``loop.call_soon_threadsafe``: no polling, no busy loop, nothing heavy on the audio thread.
Resampling to 24 kHz, levels, VAD and the pre-roll ring all run on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from voicetui.audio.devices import find_device, negotiate
from voicetui.audio.errors import AudioError, AudioErrorCode, ErrorCallback
from voicetui.audio.framing import FrameBuilder
from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Int16Array
from voicetui.audio.resample import StreamResampler, to_int16
from voicetui.audio.sd_loader import load_sounddevice
from voicetui.audio.stats import SampleRing
from voicetui.audio.vad import Vad

log = logging.getLogger(__name__)

_STALL_S = 1.5  # no callback for this long while running = the device is gone
_END = None  # queue sentinel


class DeviceInput:
    """:class:`~voicetui.audio.ports.AudioInput` on a real microphone."""

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
        self.device = device
        self.forced_channels = channels
        self.channels = 1
        self.block_ms = block_ms
        self.forced_rate = device_rate
        self.latency = latency
        self.rate = ENGINE_RATE
        self.device_name = ""
        self.overflows = 0
        self.dropped_frames = 0  # frames dropped because nobody consumed them
        self.queue_latency_s = SampleRing()  # callback -> frame on the loop, for the benchmark
        self.process_s = SampleRing()  # loop-side work per block (resample, level, VAD)
        self._builder = FrameBuilder(
            block_ms, preroll_ms, Vad(vad_mode) if vad_mode is not None else None
        )
        self._resampler = StreamResampler(ENGINE_RATE, ENGINE_RATE)
        self._queue: asyncio.Queue[CaptureFrame | None] = asyncio.Queue(max_queued_frames)
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_error: ErrorCallback | None = None
        self._stopping = False
        self._failed = False
        self._last_callback = 0.0
        self._watchdog: asyncio.Task[None] | None = None
        self._zero_since: float | None = None
        self._last_block_at = 0.0

    async def start(self) -> None:
        """Open and start the stream; raise :class:`AudioError` if that is impossible."""
        if self._stream is not None:
            return
        self._loop = asyncio.get_running_loop()
        sd = load_sounddevice()
        dev = find_device(self.device, "input")
        rate, channels = negotiate(
            dev, "input", rate=self.forced_rate, channels=self.forced_channels
        )
        self.rate = rate
        self.channels = channels
        self.device_name = dev.name
        self._resampler = StreamResampler(rate, ENGINE_RATE)
        self._queue = asyncio.Queue(self._queue.maxsize)  # a restart must not see the old end
        # at the engine rate the device hands over int16 directly: no conversion at all
        dtype = "int16" if self._resampler.passthrough else "float32"
        try:
            stream = sd.InputStream(
                device=dev.index,
                samplerate=rate,
                channels=channels,  # stereo-only devices: channel 0 is used
                dtype=dtype,
                blocksize=max(1, round(rate * self.block_ms / 1000)),
                latency=self.latency,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stopping = False
            self._failed = False
            self._last_callback = time.monotonic()
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(
                f"cannot open input device '{dev.name}' at {rate} Hz: {exc}",
                AudioErrorCode.STREAM_ERROR,
            ) from exc
        self._stream = stream
        self._watchdog = asyncio.create_task(self._watch(), name="voicetui-input-watchdog")

    async def stop(self) -> None:
        """Stop the stream and end :meth:`frames` (idempotent)."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()
        self._put(_END)

    def set_on_error(self, callback: ErrorCallback | None) -> None:
        """Receive mid-session failures (device lost) on the event loop."""
        self._on_error = callback

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

    def _finished(self) -> None:
        if not self._stopping and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(
                    self._fail, "the input stream stopped unexpectedly (device unplugged?)"
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

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if self._stream is None or self._stopping:
                return
            if time.monotonic() - self._last_callback > _STALL_S:
                self._fail("the input device stopped responding (unplugged or sound server gone)")
                return

    def _fail(self, why: str) -> None:
        if self._failed or self._stopping:
            return
        self._failed = True
        name = self.device_name or "default"
        err = AudioError(
            f"microphone '{name}' lost: {why}; pick another input device or"
            " reconnect it and restart the session",
            AudioErrorCode.DEVICE_LOST,
        )
        log.warning("%s", err.message)
        self._put(_END)
        if self._on_error is not None:
            self._on_error(err)
