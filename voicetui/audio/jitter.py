"""The playback jitter buffer shared by the device speaker and the real-time WAV speaker.

Chunks arrive on the event loop (``push``); a real-time consumer (the PortAudio callback, or
the WAV pacer) takes fixed blocks out (``pull``). Rules:

* playback starts once ``prebuffer`` is queued *before* the newest chunk (the source is
  running ahead: a burst), or once the oldest queued sample has waited ``prebuffer`` long, so
  the cushion against the next chunk's lateness is ``prebuffer`` whatever the chunk size;
* an *underrun* is the buffer running dry in the middle of an item (more audio for the same
  item arrives after it emptied); each one grows the pre-buffer by one step, up to a cap;
  running dry at the end of an item is not an underrun;
* ``flush`` drops everything at once; the next ``pull`` plays a short fade of what was about
  to play, so the cut is click-free and done within one block;
* frames actually handed to the consumer are counted per item inside ``pull`` (what the
  listener heard, for OpenAI's ``conversation.item.truncate``).

``pull`` runs on the audio thread: no allocation beyond small Python objects, one short lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicetui.audio.level import SILENCE_DBFS, rms_dbfs_float

Float32Array = npt.NDArray[np.float32]

_LEVEL_HISTORY = 128  # recent output levels kept for the echo gate (128 blocks ~ 1.3 s)
_MAX_ITEMS = 64  # played counters kept per item (older items are forgotten)

# event kinds handed to the owner after a pull
FIRST_AUDIO = "first_audio"
DRAINED = "drained"
ITEM_END = "item_end"  # the consumer moved on from an item to the next one


@dataclass(slots=True)
class _Chunk:
    item_id: str
    data: Float32Array
    pos: int = 0


class JitterBuffer:
    """Thread-safe FIFO of float32 chunks at one rate, with pre-buffering and flush."""

    def __init__(
        self,
        rate: int,
        *,
        prebuffer_ms: float = 20.0,
        max_prebuffer_ms: float = 40.0,
        step_ms: float = 10.0,
    ) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._chunks: deque[_Chunk] = deque()
        self._buffered = 0
        self._playing = False
        self._pending_since: float | None = None
        self._prebuffer = int(rate * prebuffer_ms / 1000)
        self._max_prebuffer = max(self._prebuffer, int(rate * max_prebuffer_ms / 1000))
        self._step = max(1, int(rate * step_ms / 1000))
        self._played: OrderedDict[str, int] = OrderedDict()
        self._current: str | None = None
        self._starved_item: str | None = None
        self._fade: Float32Array | None = None
        self._fade_pos = 0
        self._events: list[tuple[str, str, float]] = []
        self.underruns = 0
        self.level_dbfs = SILENCE_DBFS
        self._lvl_t = np.zeros(_LEVEL_HISTORY, dtype=np.float64)
        self._lvl_db = np.full(_LEVEL_HISTORY, SILENCE_DBFS, dtype=np.float64)
        self._lvl_i = 0

    # ---------------------------------------------------------------- loop side
    @property
    def prebuffer_ms(self) -> float:
        """Current pre-buffer (grows after underruns)."""
        return self._prebuffer * 1000.0 / self.rate

    @property
    def buffered_ms(self) -> float:
        """Audio queued and not yet pulled."""
        return self._buffered * 1000.0 / self.rate

    def push(self, item_id: str, data: Float32Array, now: float, *, tail: bool = False) -> None:
        """Queue ``data`` (float32 at :attr:`rate`) for ``item_id``.

        ``tail=True`` marks the few samples a resampler held back at the end of an item:
        they play at once and never count as an underrun.
        """
        if len(data) == 0:
            return
        with self._lock:
            if tail:
                self._chunks.append(_Chunk(item_id, data))
                self._buffered += len(data)
                self._playing = True
                return
            if self._starved_item is not None:
                if item_id == self._starved_item:
                    # the same item ran dry and continues: a real underrun -> more cushion
                    self.underruns += 1
                    self._prebuffer = min(self._prebuffer + self._step, self._max_prebuffer)
                self._starved_item = None
            if not self._playing and self._buffered == 0:
                self._pending_since = now
            self._chunks.append(_Chunk(item_id, data))
            self._buffered += len(data)

    def flush(self, fade_frames: int) -> tuple[str | None, int]:
        """Drop everything queued; return (item that was playing, its frames played)."""
        with self._lock:
            current = self._current
            # "playing" includes a pause inside the item (ran dry, more of it queued or due)
            in_item = current is not None and (
                self._playing
                or self._starved_item == current
                or (bool(self._chunks) and self._chunks[0].item_id == current)
            )
            item = current if in_item else None
            if self._playing and fade_frames > 0 and self._chunks:
                # the fade is built from what would have played next, then ramps to zero
                take: list[Float32Array] = []
                need = fade_frames
                for chunk in self._chunks:
                    piece = chunk.data[chunk.pos : chunk.pos + need]
                    take.append(piece)
                    need -= len(piece)
                    if need <= 0:
                        break
                fade = np.concatenate(take).astype(np.float32)
                fade *= np.linspace(1.0, 0.0, len(fade), dtype=np.float32)
                self._fade, self._fade_pos = fade, 0
            self._chunks.clear()
            self._buffered = 0
            self._playing = False
            self._pending_since = None
            self._starved_item = None
            played = self._played.get(item, 0) if item is not None else 0
            return item, played

    def played_frames(self, item_id: str) -> int:
        """Frames of ``item_id`` handed to the consumer so far."""
        return self._played.get(item_id, 0)

    def is_active(self) -> bool:
        """Audio queued, playing, or a flush fade still to play."""
        return self._buffered > 0 or self._playing or self._fade is not None

    def take_events(self) -> list[tuple[str, str, float]]:
        """Events produced by ``pull`` since the last call: (kind, item_id, time)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def recent_level_dbfs(self, window_s: float, now: float) -> float:
        """Loudest block level in the last ``window_s`` seconds (echo reference)."""
        mask = self._lvl_t >= now - window_s
        if not mask.any():
            return SILENCE_DBFS
        return float(self._lvl_db[mask].max())

    # ---------------------------------------------------------------- audio thread
    def pull(self, out: Float32Array, now: float) -> int:
        """Fill ``out`` (zeros where nothing plays); return frames of real audio written."""
        n = len(out)
        written = 0
        with self._lock:
            fade = self._fade
            if fade is not None:
                k = min(n, len(fade) - self._fade_pos)
                out[:k] = fade[self._fade_pos : self._fade_pos + k]
                self._fade_pos += k
                written = k
                if self._fade_pos >= len(fade):
                    self._fade = None
            if not self._playing and self._buffered > 0:
                # Start once the audio queued *before the newest chunk* covers the pre-buffer
                # (a burst: the next chunk already came, so the source runs ahead), or once
                # the oldest queued sample has waited the pre-buffer. Counting the newest
                # chunk too would make a big chunk start at once with no cushion for the
                # next one's lateness.
                newest = self._chunks[-1]
                older = self._buffered - (len(newest.data) - newest.pos)
                waited = (
                    (now - self._pending_since) * self.rate
                    if self._pending_since is not None
                    else 0.0
                )
                if older >= self._prebuffer or waited >= self._prebuffer:
                    self._playing = True
            if self._playing:
                chunks = self._chunks
                while written < n and chunks:
                    chunk = chunks[0]
                    item = chunk.item_id
                    if item != self._current or item not in self._played:
                        if self._current is not None and item != self._current:
                            self._events.append((ITEM_END, self._current, now))
                        self._current = item
                        if item not in self._played:
                            self._played[item] = 0
                            self._events.append((FIRST_AUDIO, item, now))
                            if len(self._played) > _MAX_ITEMS:
                                self._played.popitem(last=False)
                    take = min(n - written, len(chunk.data) - chunk.pos)
                    out[written : written + take] = chunk.data[chunk.pos : chunk.pos + take]
                    chunk.pos += take
                    written += take
                    self._buffered -= take
                    self._played[item] += take
                    if chunk.pos >= len(chunk.data):
                        chunks.popleft()
                if not chunks:
                    self._playing = False
                    self._pending_since = None
                    self._starved_item = self._current
                    self._events.append((DRAINED, self._current or "", now))
            if written < n:
                out[written:] = 0.0
            level = rms_dbfs_float(out) if written else SILENCE_DBFS
            i = self._lvl_i
            self._lvl_t[i] = now
            self._lvl_db[i] = level
            self._lvl_i = (i + 1) % _LEVEL_HISTORY
            self.level_dbfs = level
        return written
