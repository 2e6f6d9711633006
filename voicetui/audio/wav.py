"""WAV files as microphone and speaker, so every loop runs headless.

* :func:`open_wav` parses the header itself (``wave`` refuses WAVE_FORMAT_EXTENSIBLE, which
  sox writes for 24/32-bit and float): PCM 8/16/24/32-bit and float 32/64, plain or
  extensible; any other file is refused in one line naming what it is and what is supported.
* :class:`WavInput` streams a file (read and resampled block by block: a 1-hour file keeps
  memory flat), converts it to mono 24 kHz and yields 20 ms frames, paced in
  real time (like a microphone) or as fast as the consumer takes them; it ends at EOF, after an
  optional tail of silence (VAD-driven providers need silence to end the turn).
* :class:`WavOutput` writes mono PCM16 24 kHz to a temp file renamed over the path at stop.
  In real-time mode it drains the same jitter buffer as the device speaker on a 10 ms clock,
  so ``flush``/``played_ms`` mean the same thing; in fast mode every chunk is written at once
  and counts as played.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
import time
import wave
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicetui.audio.errors import AudioError, AudioErrorCode, ErrorCallback
from voicetui.audio.framing import FrameBuilder
from voicetui.audio.jitter import DRAINED, FIRST_AUDIO, ITEM_END, JitterBuffer
from voicetui.audio.level import SILENCE_DBFS, rms_dbfs_float
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Float32Array, Int16Array
from voicetui.audio.resample import resample_once, to_float32, to_int16
from voicetui.audio.vad import Vad
from voicetui.fileio import AtomicFile, UnsafePath, reason

# sox and most tools write 24/32-bit and float audio as WAVE_FORMAT_EXTENSIBLE: the real
# format is the first two bytes of the sub-format GUID, the rest is this fixed tail
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_TAG_NAMES = {2: "MS ADPCM", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM", 0x55: "MP3"}
SUPPORTED = "PCM 8/16/24/32-bit integer or 32/64-bit float, plain or extensible"
MIN_RATE, MAX_RATE = 1_000, 768_000
MAX_CHANNELS = 64
_MAX_CHUNKS = 4096  # a header with more chunks than this is not a real WAV


@dataclass(frozen=True, slots=True)
class WavFormat:
    """What :func:`open_wav` found: where the samples are and how to read them."""

    path: Path
    is_float: bool
    bits: int
    channels: int
    rate: int
    data_offset: int
    frames: int

    @property
    def block_align(self) -> int:
        return self.channels * self.bits // 8

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate


def _wav_error(path: str | Path, what: str) -> AudioError:
    return AudioError(f"cannot read WAV '{path}': {what}", AudioErrorCode.WAV_ERROR)


def open_wav(path: str | Path) -> WavFormat:
    """Parse a WAV header (RIFF chunks, no samples read). Raises :class:`AudioError` with one
    line naming the format found and what is supported."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(12)
            if not head:
                raise _wav_error(path, "the file is empty")
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise _wav_error(path, "not a WAV file (no RIFF/WAVE header)")
            fmt: bytes | None = None
            for _ in range(_MAX_CHUNKS):
                chunk = fh.read(8)
                if len(chunk) < 8:
                    raise _wav_error(path, "no audio data (no 'data' chunk)")
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(min(csize, 64))
                    fh.seek(csize - len(fmt) + (csize & 1), os.SEEK_CUR)
                elif cid == b"data":
                    offset = fh.tell()
                    return _format(path, fmt, offset, min(csize, size - offset))
                else:
                    fh.seek(csize + (csize & 1), os.SEEK_CUR)
            raise _wav_error(path, "too many chunks before the audio data")
    except OSError as exc:
        raise _wav_error(path, reason(exc)) from None


def _format(path: str | Path, fmt: bytes | None, offset: int, data_size: int) -> WavFormat:
    if fmt is None or len(fmt) < 16:
        raise _wav_error(path, "no format ('fmt ') chunk before the audio data")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise _wav_error(path, f"unknown extensible sub-format; supported: {SUPPORTED}")
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in (_PCM, _FLOAT):
        name = _TAG_NAMES.get(tag, f"format tag {tag}")
        raise _wav_error(path, f"{name} audio is not supported; supported: {SUPPORTED}")
    is_float = tag == _FLOAT
    if (is_float and bits not in (32, 64)) or (not is_float and bits not in (8, 16, 24, 32)):
        kind = "float" if is_float else "integer PCM"
        raise _wav_error(path, f"{bits}-bit {kind} is not supported; supported: {SUPPORTED}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise _wav_error(path, f"{channels} channels (supported: 1 to {MAX_CHANNELS})")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _wav_error(
            path, f"sample rate {rate} Hz is not supported ({MIN_RATE} to {MAX_RATE} Hz)"
        )
    if block_align != channels * bits // 8:
        raise _wav_error(
            path, f"inconsistent header (block align {block_align} for {channels}x{bits} bits)"
        )
    frames = max(0, data_size) // block_align  # a torn last frame is dropped
    return WavFormat(Path(path), is_float, bits, channels, rate, offset, frames)


def _decode(raw: bytes, fmt: WavFormat) -> Float32Array:
    """Whole frames of ``raw`` as mono float32 in [-1, 1]."""
    usable = len(raw) - len(raw) % fmt.block_align
    raw = raw[:usable]
    if fmt.is_float:
        data = np.frombuffer(raw, dtype="<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
        data = np.clip(np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    elif fmt.bits == 8:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif fmt.bits == 16:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif fmt.bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    else:
        data = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(
            np.float32
        )
    if fmt.channels > 1:
        data = data.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


def iter_wav(fmt: WavFormat, block_frames: int = 24_000) -> Iterator[Float32Array]:
    """The file's audio as mono float32 blocks at its own rate, read as it goes."""
    try:
        with open(fmt.path, "rb") as fh:
            fh.seek(fmt.data_offset)
            left = fmt.frames
            while left > 0:
                n = min(block_frames, left)
                raw = fh.read(n * fmt.block_align)
                if not raw:
                    return
                left -= n
                yield _decode(raw, fmt)
    except OSError as exc:
        raise _wav_error(fmt.path, reason(exc)) from None


def iter_wav_resampled(
    fmt: WavFormat, rate: int = ENGINE_RATE, block_frames: int = 24_000
) -> Iterator[Float32Array]:
    """The file's audio as mono float32 at ``rate``, resampled as a stream (memory flat)."""
    if fmt.rate == rate:
        yield from iter_wav(fmt, block_frames)
        return
    import soxr

    stream = soxr.ResampleStream(fmt.rate, rate, 1, dtype="float32", quality="HQ")
    for block in iter_wav(fmt, block_frames):
        out = stream.resample_chunk(block)
        if len(out):
            yield np.asarray(out, dtype=np.float32)
    tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if len(tail):
        yield np.asarray(tail, dtype=np.float32)


def read_wav_mono(path: str | Path, rate: int = ENGINE_RATE) -> Float32Array:
    """Read a WAV (see :data:`SUPPORTED`, any channels/rate) as mono float32 at ``rate``.

    Loads the whole file: for long inputs use :func:`iter_wav_resampled`."""
    fmt = open_wav(path)
    blocks = list(iter_wav(fmt))
    data = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return resample_once(data, fmt.rate, rate)


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
        self._format: WavFormat | None = None
        self._stopped = asyncio.Event()
        self._on_error: ErrorCallback | None = None
        self._started = False

    async def start(self) -> None:
        """Check the file's header; raise :class:`AudioError` if it cannot be read. The
        samples are read (and resampled) as :meth:`frames` goes: memory stays flat."""
        self._format = open_wav(self.path)
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
        if self._format is None:
            return 0.0
        return self._format.duration_s * 1000.0 + self.lead_silence_ms + self.tail_silence_ms

    def _blocks(self, fmt: WavFormat) -> Iterator[Int16Array]:
        """Blocks of ``block`` samples at the engine rate: lead silence, the file, tail."""
        block = self._builder.block
        lead = np.zeros(int(ENGINE_RATE * self.lead_silence_ms / 1000), dtype=np.float32)
        tail = np.zeros(int(ENGINE_RATE * self.tail_silence_ms / 1000), dtype=np.float32)
        pending = np.zeros(0, dtype=np.int16)
        pieces = itertools.chain((lead,), iter_wav_resampled(fmt, ENGINE_RATE), (tail,))
        for piece in pieces:
            pending = np.concatenate((pending, to_int16(piece)))
            whole = len(pending) - len(pending) % block
            for i in range(0, whole, block):
                yield pending[i : i + block]
            pending = pending[whole:]
        if len(pending):
            yield np.concatenate((pending, np.zeros(block - len(pending), dtype=np.int16)))

    async def frames(self) -> AsyncIterator[CaptureFrame]:
        """20 ms frames from the file; real-time pacing on an absolute clock (no drift)."""
        if self._format is None:
            await self.start()
        fmt = self._format
        assert fmt is not None
        block = self._builder.block
        t0 = time.monotonic()
        for i, chunk in enumerate(self._blocks(fmt)):
            if self._stopped.is_set():
                return
            if self.realtime:
                due = t0 + (i + 1) * block / ENGINE_RATE  # a block exists once captured
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the consumer's other tasks run
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
        self._on_played: Callable[[str, float], None] | None = None
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
            # wait for it without swallowing a cancellation of the caller itself
            await asyncio.wait({self._pacer})
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

    def set_on_played(self, callback: Callable[[str, float], None] | None) -> None:
        """Real time: ``callback(item_id, t)`` when an item's queued audio has all played
        (fast mode writes at once, so there is nothing to wait for)."""
        self._on_played = callback

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
                elif kind in (DRAINED, ITEM_END):
                    if kind == DRAINED and not self._jb.is_active():
                        self._idle.set()
                    if self._on_played is not None:
                        self._on_played(item, t)
