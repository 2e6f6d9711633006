"""WAV files as microphone and speaker, so every loop runs headless.

* :class:`WavInput` reads a file, converts it to mono 24 kHz and yields 20 ms frames, paced in
  real time (like a microphone) or as fast as the consumer takes them; it ends at EOF, after an
  optional tail of silence (VAD-driven providers need silence to end the turn).
* :class:`WavOutput` writes mono PCM16 24 kHz. In real-time mode it drains the same jitter
  buffer as the device speaker on a 10 ms clock, so ``flush``/``played_ms`` mean the same
  thing; in fast mode every chunk is written at once and counts as played.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np

from voicetui.audio.errors import AudioError, AudioErrorCode, ErrorCallback
from voicetui.audio.framing import FrameBuilder
from voicetui.audio.jitter import DRAINED, FIRST_AUDIO, JitterBuffer
from voicetui.audio.level import SILENCE_DBFS, rms_dbfs_float
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Float32Array, Int16Array
from voicetui.audio.resample import resample_once, to_float32, to_int16
from voicetui.audio.vad import Vad
from voicetui.fileio import AtomicFile, UnsafePath, reason


def read_wav_mono(path: str | Path, rate: int = ENGINE_RATE) -> Float32Array:
    """Read a PCM WAV (8/16/24/32-bit integer, any channels/rate) as mono float32 at ``rate``."""
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, src_rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"cannot read WAV '{path}': {exc}", AudioErrorCode.WAV_ERROR) from exc
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise AudioError(
            f"unsupported WAV sample width {width} in '{path}'", AudioErrorCode.WAV_ERROR
        )
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return resample_once(data.astype(np.float32), src_rate, rate)


def write_wav_pcm16(
    path: str | Path, pcm: Int16Array | Float32Array, rate: int = ENGINE_RATE
) -> None:
    """Write mono PCM16 (int16 as is, float32 scaled and clipped)."""
    data = pcm if pcm.dtype == np.int16 else to_int16(np.asarray(pcm, dtype=np.float32))
    with AtomicFile(path, 0o644) as out, wave.open(out.handle, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(data, dtype="<i2").tobytes())


class WavInput:
    """:class:`~voicetui.audio.ports.AudioInput` reading a WAV file."""

    def __init__(
        self,
        path: str | Path,
        realtime: bool = True,
        *,
        block_ms: float = 20.0,
        tail_silence_ms: float = 0.0,
        lead_silence_ms: float = 0.0,
        preroll_ms: float = 300.0,
        vad_mode: int | None = 2,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.block_ms = block_ms
        self.tail_silence_ms = tail_silence_ms
        self.lead_silence_ms = lead_silence_ms
        self._builder = FrameBuilder(
            block_ms, preroll_ms, Vad(vad_mode) if vad_mode is not None else None
        )
        self._pcm: Int16Array | None = None
        self._stopped = asyncio.Event()
        self._on_error: ErrorCallback | None = None
        self._started = False

    async def start(self) -> None:
        """Load and convert the file; raise :class:`AudioError` if it cannot be read."""
        audio = read_wav_mono(self.path, ENGINE_RATE)
        lead = np.zeros(int(ENGINE_RATE * self.lead_silence_ms / 1000), dtype=np.float32)
        tail = np.zeros(int(ENGINE_RATE * self.tail_silence_ms / 1000), dtype=np.float32)
        self._pcm = to_int16(np.concatenate((lead, audio, tail)))
        self._stopped.clear()
        self._started = True

    async def stop(self) -> None:
        """End :meth:`frames` early."""
        self._stopped.set()

    def set_on_error(self, callback: ErrorCallback | None) -> None:
        """Accepted for symmetry with the device input (a file cannot be unplugged)."""
        self._on_error = callback

    @property
    def duration_ms(self) -> float:
        return 0.0 if self._pcm is None else len(self._pcm) * 1000.0 / ENGINE_RATE

    async def frames(self) -> AsyncIterator[CaptureFrame]:
        """20 ms frames from the file; real-time pacing on an absolute clock (no drift)."""
        if self._pcm is None:
            await self.start()
        pcm = self._pcm
        assert pcm is not None
        block = self._builder.block
        t0 = time.monotonic()
        n_blocks = (len(pcm) + block - 1) // block
        for i in range(n_blocks):
            if self._stopped.is_set():
                return
            if self.realtime:
                due = t0 + (i + 1) * block / ENGINE_RATE  # a block exists once captured
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the consumer's other tasks run
            chunk = pcm[i * block : (i + 1) * block]
            if len(chunk) < block:
                chunk = np.concatenate((chunk, np.zeros(block - len(chunk), dtype=np.int16)))
            for frame in self._builder.feed(chunk, time.monotonic()):
                yield frame

    def preroll(self, ms: float | None = None) -> Int16Array:
        """The last ``ms`` of audio already yielded."""
        return self._builder.preroll(ms)

    @property
    def level_dbfs(self) -> float:
        return self._builder.level_dbfs

    @property
    def speech(self) -> bool | None:
        return self._builder.speech


class WavOutput:
    """:class:`~voicetui.audio.ports.AudioOutput` writing mono PCM16 24 kHz to a file."""

    def __init__(
        self,
        path: str | Path,
        realtime: bool = False,
        *,
        block_ms: float = 10.0,
        prebuffer_ms: float = 20.0,
        max_prebuffer_ms: float = 40.0,
    ) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.block = max(1, int(ENGINE_RATE * block_ms / 1000))
        self._jb = JitterBuffer(
            ENGINE_RATE, prebuffer_ms=prebuffer_ms, max_prebuffer_ms=max_prebuffer_ms
        )
        self._writer: wave.Wave_write | None = None
        self._file: AtomicFile | None = None
        self._pacer: asyncio.Task[None] | None = None
        self._on_first_audio: Callable[[str, float], None] | None = None
        self._on_error: ErrorCallback | None = None
        self._written: OrderedDict[str, int] = OrderedDict()  # fast mode: frames per item
        self._current: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._started_audio = False
        self.level = SILENCE_DBFS
        self._lvl_t = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Create the file (and the real-time pacer).

        The audio goes to a temp file next to the path, renamed over it at :meth:`stop`:
        whatever is at the path stays untouched until then."""
        if self._writer is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._file = AtomicFile(self.path, 0o644)
        except UnsafePath as exc:
            raise AudioError(str(exc.strerror), AudioErrorCode.WAV_ERROR) from None
        except OSError as exc:
            raise AudioError(
                f"cannot write WAV '{self.path}': {reason(exc)}", AudioErrorCode.WAV_ERROR
            ) from None
        w = wave.open(self._file.handle, "wb")  # noqa: SIM115 - kept open until stop()
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(ENGINE_RATE)
        self._writer = w
        if self.realtime:
            self._pacer = asyncio.create_task(self._pace(), name="voicetui-wav-speaker")

    async def stop(self) -> None:
        """Finish the file (the header gets its final length)."""
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
            self._pacer = None
        writer, file = self._writer, self._file
        self._writer = self._file = None
        self._idle.set()
        if writer is None or file is None:
            return
        try:
            writer.close()  # the header gets its final length; the temp file stays open
            file.commit()
        except OSError as exc:
            file.abort()
            raise AudioError(
                f"cannot write WAV '{self.path}': {reason(exc)}", AudioErrorCode.WAV_ERROR
            ) from None

    def set_on_error(self, callback: ErrorCallback | None) -> None:
        self._on_error = callback

    def _write(self, data: Float32Array) -> None:
        if self._writer is not None and len(data):
            self._writer.writeframesraw(to_int16(data).astype("<i2").tobytes())

    def enqueue(self, item_id: str, pcm: Int16Array | Float32Array) -> None:
        """Queue (real-time) or write (fast) a chunk of ``item_id``."""
        data = to_float32(pcm)
        now = time.monotonic()
        if self.realtime:
            self._idle.clear()
            self._jb.push(item_id, data, now)
            return
        if item_id not in self._written:
            self._written[item_id] = 0
            if len(self._written) > 64:
                self._written.popitem(last=False)
            if self._on_first_audio is not None:
                self._on_first_audio(item_id, now)
        self._current = item_id
        self._written[item_id] += len(data)
        self.level, self._lvl_t = rms_dbfs_float(data), now
        self._write(data)

    def flush(self, fade_ms: float = 5.0) -> int:
        """Real-time: drop what is queued (fade) and return ms played; fast: ms written."""
        if self.realtime:
            item, frames = self._jb.flush(int(ENGINE_RATE * fade_ms / 1000))
            return frames * 1000 // ENGINE_RATE if item is not None else 0
        item, self._current = self._current, None
        return self._written.get(item, 0) * 1000 // ENGINE_RATE if item else 0

    def played_ms(self, item_id: str) -> int:
        frames = self._jb.played_frames(item_id) if self.realtime else self._written.get(item_id, 0)
        return frames * 1000 // ENGINE_RATE

    def is_active(self) -> bool:
        return self.realtime and self._jb.is_active()

    async def wait_idle(self) -> None:
        while self.is_active() and self._pacer is not None:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=0.5)

    def set_on_first_audio(self, callback: Callable[[str, float], None] | None) -> None:
        self._on_first_audio = callback

    @property
    def level_dbfs(self) -> float:
        if self.realtime:
            return self._jb.level_dbfs
        return self.level if time.monotonic() - self._lvl_t < 0.1 else SILENCE_DBFS

    def recent_level_dbfs(self, window_s: float = 0.2) -> float:
        """Loudest recent output level (echo reference)."""
        if self.realtime:
            return self._jb.recent_level_dbfs(window_s, time.monotonic())
        return self.level if time.monotonic() - self._lvl_t < window_s else SILENCE_DBFS

    @property
    def underruns(self) -> int:
        return self._jb.underruns

    async def _pace(self) -> None:
        """Drain the jitter buffer at 24 kHz on an absolute 10 ms clock, like a sound card."""
        out = np.zeros(self.block, dtype=np.float32)
        period = self.block / ENGINE_RATE
        tick = time.monotonic()
        while True:
            tick += period
            delay = tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.5:  # the loop was blocked for long: resync instead of bursting
                tick = time.monotonic()
            now = time.monotonic()
            written = self._jb.pull(out, now)
            if written:
                self._started_audio = True
            if self._started_audio:
                # once the first reply started, silence between replies is written too,
                # so the file keeps the real timing of the conversation
                self._write(out)
            for kind, item, t in self._jb.take_events():
                if kind == FIRST_AUDIO and self._on_first_audio is not None:
                    self._on_first_audio(item, t)
                elif kind == DRAINED and not self._jb.is_active():
                    self._idle.set()
