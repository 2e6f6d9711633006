"""What the device microphone and speaker share: opening a PortAudio stream on a named
device, closing it, and noticing when the device goes away mid-session.

A lost device is never an exception in the middle of a conversation: the watchdog (no
callback for a while) and PortAudio's finished callback both end in :meth:`DeviceStream._fail`,
which hands one :class:`AudioError` to the ``on_error`` callback on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any, ClassVar, Literal

from voicetui.audio.devices import DeviceInfo, find_device, negotiate
from voicetui.audio.errors import AudioError, AudioErrorCode, ErrorCallback
from voicetui.audio.ports import ENGINE_RATE
from voicetui.audio.sd_loader import load_sounddevice

log = logging.getLogger(__name__)

_WATCHDOG_S = 0.25  # how often the loop checks that the callback still runs
_STALL_S = 1.5  # no callback for this long while running = the device is gone


class DeviceStream:
    """Base of :class:`~voicetui.audio.capture.DeviceInput` and
    :class:`~voicetui.audio.playback.DeviceOutput`: one stream on one device."""

    KIND: ClassVar[Literal["input", "output"]]
    LABEL: ClassVar[str]  # what the user calls it: "microphone", "speaker"

    def __init__(
        self,
        device: str | None,
        *,
        block_ms: float,
        device_rate: int | None,
        channels: int | None,
        latency: str | float,
    ) -> None:
        self.device = device
        self.forced_channels = channels
        self.channels = 1
        self.block_ms = block_ms
        self.forced_rate = device_rate
        self.latency = latency
        self.rate = ENGINE_RATE
        self.device_name = ""
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_error: ErrorCallback | None = None
        self._stopping = False
        self._failed = False
        self._last_callback = 0.0
        self._watchdog: asyncio.Task[None] | None = None

    def set_on_error(self, callback: ErrorCallback | None) -> None:
        """Receive mid-session failures (device lost) on the event loop."""
        self._on_error = callback

    # ------------------------------------------------------------------ for subclasses
    def _negotiate(self) -> DeviceInfo:
        """Find the device and settle the rate and channel count it accepts."""
        self._loop = asyncio.get_running_loop()
        dev = find_device(self.device, self.KIND)
        self.rate, self.channels = negotiate(
            dev, self.KIND, rate=self.forced_rate, channels=self.forced_channels
        )
        self.device_name = dev.name
        return dev

    def _open(self, factory: Any, dev: DeviceInfo, dtype: str, callback: Any) -> Any:
        """Open and start ``factory`` (``sd.InputStream`` or ``sd.OutputStream``) on ``dev``
        at the negotiated rate, start the watchdog, and return the running stream.

        Blocks (PortAudio may take hundreds of ms): from the event loop use
        :meth:`_open_async`."""
        stream = self._start_stream(factory, dev, dtype, callback)
        self._stream = stream
        self._watchdog = asyncio.create_task(self._watch(), name=f"voicetui-{self.KIND}-watchdog")
        return stream

    async def _open_async(self, factory: Any, dev: DeviceInfo, dtype: str, callback: Any) -> Any:
        """:meth:`_open` with PortAudio's open/start in a worker thread (the loop keeps
        running while the sound server answers).

        Cancelled meanwhile (a mic test stopped as it starts), the thread still opens the
        stream: it is closed as soon as it is open. Dropped instead, the Python object would be
        collected while PortAudio's thread still calls into its freed callback (a native crash:
        SIGSEGV / SIGILL)."""
        opening = asyncio.ensure_future(
            asyncio.to_thread(self._start_stream, factory, dev, dtype, callback)
        )
        try:
            stream = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._close_orphan)
            raise
        self._stream = stream
        self._watchdog = asyncio.create_task(self._watch(), name=f"voicetui-{self.KIND}-watchdog")
        return stream

    def _start_stream(self, factory: Any, dev: DeviceInfo, dtype: str, callback: Any) -> Any:
        sd = load_sounddevice()
        try:
            stream = factory(
                device=dev.index,
                samplerate=self.rate,
                channels=self.channels,  # a device that refuses mono: channel 0 is ours
                dtype=dtype,
                blocksize=max(1, round(self.rate * self.block_ms / 1000)),
                latency=self.latency,
                callback=callback,
                finished_callback=self._finished,
            )
            self._stopping = False
            self._failed = False
            self._last_callback = time.monotonic()
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise AudioError(
                f"cannot open {self.KIND} device '{dev.name}' at {self.rate} Hz: {exc}",
                AudioErrorCode.STREAM_ERROR,
            ) from exc
        return stream

    def _close_orphan(self, opening: asyncio.Future[Any]) -> None:
        """Close a stream whose opener was cancelled (see :meth:`_open_async`)."""
        if opening.cancelled() or opening.exception() is not None:
            return
        self._stopping = True  # not "stopped unexpectedly"
        # the thread holds the stream until it is closed
        threading.Thread(
            target=_abort_and_close, args=(opening.result(),), name="voicetui-close", daemon=True
        ).start()

    async def _close(self) -> None:
        """Stop the watchdog, then abort and close the stream (idempotent).

        The close starts before the first await: a caller cancelled at that await must not
        drop the last reference to a running stream (see :meth:`_open_async`)."""
        self._stopping = True
        stream, self._stream = self._stream, None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        if stream is not None:
            # PortAudio's abort/close can block on the sound server: not on the loop. Shielded:
            # a cancelled wait here must not cancel the close itself (a queued executor job
            # would be dropped with the last reference to the stream).
            await asyncio.shield(asyncio.ensure_future(asyncio.to_thread(_abort_and_close, stream)))
        if watchdog is not None:
            # wait for it without swallowing a cancellation of the caller itself
            await asyncio.wait({watchdog})

    def _on_failed(self) -> None:
        """Release what the subclass holds once the device is gone (runs before the user is
        told)."""

    # ------------------------------------------------------------------ failure detection
    def _finished(self) -> None:
        # PortAudio's thread: the stream ended without us asking
        if not self._stopping and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(
                    self._fail, f"the {self.KIND} stream stopped unexpectedly (device unplugged?)"
                )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(_WATCHDOG_S)
            if self._stream is None or self._stopping:
                return
            if time.monotonic() - self._last_callback > _STALL_S:
                self._fail(
                    f"the {self.KIND} device stopped responding (unplugged or sound server gone)"
                )
                return

    def _fail(self, why: str) -> None:
        if self._failed or self._stopping:
            return
        self._failed = True
        self._on_failed()
        name = self.device_name or "default"
        err = AudioError(
            f"{self.LABEL} '{name}' lost: {why}; pick another {self.KIND} device or"
            " reconnect it and restart the session",
            AudioErrorCode.DEVICE_LOST,
        )
        log.warning("%s", err.message)
        if self._on_error is not None:
            self._on_error(err)


def _abort_and_close(stream: Any) -> None:
    with contextlib.suppress(Exception):
        # abort: stop() would wait for PortAudio's queued buffers to drain
        stream.abort()
    with contextlib.suppress(Exception):
        stream.close()
