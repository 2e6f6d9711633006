"""The device speaker: one callback-driven PortAudio output stream fed by a jitter buffer.

The stream opens once and keeps running between turns (starting a stream per reply costs
device start-up latency). Small blocks (10 ms) and ``latency="low"`` keep the added latency
near one block plus the device buffer. Chunks are converted to the device rate on the event
loop when they arrive, so the callback only copies samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from voicetui.audio.jitter import DRAINED, FIRST_AUDIO, ITEM_END, JitterBuffer
from voicetui.audio.level import SILENCE_DBFS
from voicetui.audio.ports import ENGINE_RATE, Float32Array, Int16Array
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.resample import StreamResampler, to_float32
from voicetui.audio.sd_loader import load_sounddevice
from voicetui.audio.stats import SampleRing
from voicetui.audio.stream import DeviceStream

log = logging.getLogger(__name__)


class DeviceOutput(DeviceStream):
    """:class:`~voicetui.audio.ports.AudioOutput` on a real sound device."""

    KIND = "output"
    LABEL = "speaker"

    def __init__(
        self,
        device: str | None = None,
        *,
        block_ms: float = 10.0,
        prebuffer_ms: float = 20.0,
        max_prebuffer_ms: float = 40.0,
        device_rate: int | None = None,
        channels: int | None = None,
        latency: str | float = "low",
    ) -> None:
        super().__init__(
            device, block_ms=block_ms, device_rate=device_rate, channels=channels, latency=latency
        )
        self.prebuffer_ms = prebuffer_ms
        self.max_prebuffer_ms = max_prebuffer_ms
        self.callback_seconds = SampleRing()  # callback run time, for the benchmark
        self.xruns = 0  # PortAudio output_underflow flags (device-level)
        self.dac_ahead_s = 0.0  # latest callback: how far ahead of the DAC it writes
        self._jb = JitterBuffer(
            ENGINE_RATE, prebuffer_ms=prebuffer_ms, max_prebuffer_ms=max_prebuffer_ms
        )
        self._resampler = StreamResampler(ENGINE_RATE, ENGINE_RATE)
        self._resampled_item: str | None = None
        self._on_first_audio: Callable[[str, float], None] | None = None
        self._on_played: Callable[[str, float], None] | None = None
        self._out_latency = 0.0
        self._tail_until = 0.0
        self._idle = asyncio.Event()
        # what was played, for echo measurement and cancellation (None: nobody listens)
        self.reference: SpeakerReference | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Open and start the stream; raise :class:`AudioError` if that is impossible."""
        if self._stream is not None:
            return
        sd = load_sounddevice()
        dev = self._negotiate()
        self._jb = JitterBuffer(
            self.rate, prebuffer_ms=self.prebuffer_ms, max_prebuffer_ms=self.max_prebuffer_ms
        )
        self._resampler = StreamResampler(ENGINE_RATE, self.rate)
        stream = await self._open_async(sd.OutputStream, dev, "float32", self._callback)
        self._out_latency = float(stream.latency)

    async def stop(self) -> None:
        """Stop and close the stream (idempotent)."""
        await self._close()
        self._jb.flush(0)
        self._idle.set()

    # ------------------------------------------------------------------ AudioOutput
    def enqueue(self, item_id: str, pcm: Int16Array | Float32Array) -> None:
        """Queue a mono 24 kHz chunk (int16 or float32) of ``item_id``."""
        if self._failed:
            return
        data = to_float32(pcm)
        if not self._resampler.passthrough:
            if self._resampled_item is not None and item_id != self._resampled_item:
                # a new item: the filter's tail belongs to the previous one
                self._jb.push(
                    self._resampled_item, self._resampler.drain(), time.monotonic(), tail=True
                )
            self._resampled_item = item_id
            data = self._resampler.process(data)
        self._idle.clear()
        self._jb.push(item_id, data, time.monotonic())

    def flush(self, fade_ms: float = 5.0) -> int:
        """Drop queued audio now (a ``fade_ms`` fade plays in the next block); return ms
        played of the item that was playing."""
        self._resampler.reset()
        self._resampled_item = None
        item, frames = self._jb.flush(int(self.rate * fade_ms / 1000))
        return frames * 1000 // self.rate if item is not None else 0

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` handed to the device so far."""
        return self._jb.played_frames(item_id) * 1000 // self.rate

    def is_active(self) -> bool:
        """Audio queued, playing, or still in the device buffer."""
        return self._jb.is_active() or time.monotonic() < self._tail_until

    async def wait_idle(self) -> None:
        """Return once everything queued has been played (or the device failed)."""
        while self.is_active() and not self._failed and self._stream is not None:
            self._idle.clear()
            remaining = self._tail_until - time.monotonic()
            if not self._jb.is_active() and remaining > 0:
                await asyncio.sleep(remaining)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=0.5)

    def set_on_first_audio(self, callback: Callable[[str, float], None] | None) -> None:
        """``callback(item_id, t)`` on the loop when an item's first sample is played."""
        self._on_first_audio = callback

    def set_on_played(self, callback: Callable[[str, float], None] | None) -> None:
        """``callback(item_id, t)`` on the loop when an item's queued audio has all played."""
        self._on_played = callback

    @property
    def level_dbfs(self) -> float:
        """RMS of the latest output block."""
        return self._jb.level_dbfs if self._stream is not None else SILENCE_DBFS

    # ------------------------------------------------------------------ extras
    def recent_level_dbfs(self, window_s: float = 0.2) -> float:
        """Loudest output block over the last ``window_s`` (echo reference for the gate)."""
        return self._jb.recent_level_dbfs(window_s, time.monotonic())

    @property
    def underruns(self) -> int:
        """Times the buffer ran dry in the middle of an item."""
        return self._jb.underruns

    @property
    def current_prebuffer_ms(self) -> float:
        return self._jb.prebuffer_ms

    @property
    def buffered_ms(self) -> float:
        return self._jb.buffered_ms

    @property
    def output_latency_s(self) -> float:
        """Device buffer latency (time from the callback to the DAC)."""
        return self._out_latency

    # ------------------------------------------------------------------ audio thread
    def _callback(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        t0 = time.perf_counter()
        now = time.monotonic()
        self._last_callback = now
        if status.output_underflow:
            self.xruns += 1
        self.dac_ahead_s = time_info.outputBufferDacTime - time_info.currentTime
        jb = self._jb
        jb.pull(outdata[:, 0], now)
        if self.channels > 1:  # a device that refuses mono: the same signal on every channel
            outdata[:, 1:] = outdata[:, :1]
        if self.reference is not None:
            self.reference.write(outdata[:, 0], self.rate, now + self.dac_ahead_s)
        if jb._events:  # unlocked peek; take_events locks
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # loop closed under an open stream
                    loop.call_soon_threadsafe(self._dispatch, jb.take_events())
        self.callback_seconds.record(time.perf_counter() - t0)

    # ------------------------------------------------------------------ loop side
    def _dispatch(self, events: list[tuple[str, str, float]]) -> None:
        for kind, item, t in events:
            if kind == FIRST_AUDIO:
                self._notify(self._on_first_audio, item, t)
            elif kind == ITEM_END:
                self._notify(self._on_played, item, t)
            elif kind == DRAINED:
                if not self._resampler.passthrough and self._resampled_item is not None:
                    tail = self._resampler.drain()
                    if len(tail):
                        self._jb.push(self._resampled_item, tail, time.monotonic(), tail=True)
                        continue
                self._tail_until = t + self._out_latency
                if not self._jb.is_active():
                    self._idle.set()
                self._notify(self._on_played, item, t)

    @staticmethod
    def _notify(callback: Callable[[str, float], None] | None, item: str, t: float) -> None:
        if callback is None:
            return
        try:
            callback(item, t)
        except Exception:  # a listener bug must not kill playback
            log.exception("playback listener failed")

    def _on_failed(self) -> None:
        self._jb.flush(0)
        self._idle.set()  # wake wait_idle(): nothing more will play
