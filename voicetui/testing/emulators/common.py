"""What both loopback emulators share: the per-test script, timing and fault knobs, the
request log, speech-like audio, and the aiohttp server lifecycle.

The emulators exist so the *real* SDKs can be exercised offline; tests script them through
:class:`Script`, :class:`Timing` and :class:`Faults` and assert on :class:`RequestLog`.
Nothing here ever records an ``Authorization`` value.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

RATE = 24_000


@dataclass
class Turn:
    """One scripted exchange: what the user "said" and what the assistant answers."""

    user_text: str = "Hello, how are you doing today?"
    # diarized segments (speaker_id, text); default: the whole user_text by speaker_1
    segments: list[tuple[str, str]] | None = None
    reply: str = "I'm doing well, thank you for asking! How can I help you today?"
    tool: str | None = None  # e.g. "web_search": the reply is preceded by tool execution

    def speaker_segments(self) -> list[tuple[str, str]]:
        return self.segments or [("speaker_1", self.user_text)]


@dataclass
class Script:
    """Turns are consumed in order; after the last, the last one repeats."""

    turns: list[Turn] = field(default_factory=lambda: [Turn()])
    _next: int = 0

    def next_turn(self) -> Turn:
        turn = self.turns[min(self._next, len(self.turns) - 1)]
        self._next += 1
        return turn

    def reset(self) -> None:
        self._next = 0


@dataclass
class Timing:
    """Delays per stage, so benchmarks can compute the theoretical minimum."""

    first_transcript_delay_s: float = 0.0  # transcription result / first STT delta
    first_token_delay_s: float = 0.0  # first LLM token / first realtime transcript delta
    token_interval_s: float = 0.0  # between LLM tokens (words)
    first_audio_delay_s: float = 0.0  # TTS first audio / first realtime audio delta
    audio_pace: float = 0.0  # 0 = as fast as possible, 1 = real time, 2 = twice real time
    chunk_ms: int = 100  # assistant audio chunk size


@dataclass
class Faults:
    """Fault knobs. Counts are decremented as they fire."""

    http_status: int | None = None  # force this status on the next ``http_status_count`` calls
    http_status_count: int = 0
    retry_after_s: float | None = None  # sent with 429 (as retry-after-ms too)
    ws_reject_status: int | None = None  # reject the next WebSocket handshake(s)
    ws_reject_count: int = 1
    drop_after_events: int | None = None  # close the socket abnormally after N server events
    drop_close_code: int = 1011
    malformed_after_events: int | None = None  # send one non-JSON frame after N events
    unknown_after_events: int | None = None  # send one unknown event type after N events
    stall_s: float = 0.0  # slow loris: wait this long before answering / between SSE frames

    def take_http_status(self) -> int | None:
        if self.http_status is not None and self.http_status_count > 0:
            self.http_status_count -= 1
            return self.http_status
        return None

    def take_ws_reject(self) -> int | None:
        if self.ws_reject_status is not None and self.ws_reject_count > 0:
            self.ws_reject_count -= 1
            return self.ws_reject_status
        return None


@dataclass(frozen=True)
class LogEntry:
    at: float  # time.monotonic()
    kind: str  # "http", "ws_open", "ws_in" (client->server), "ws_out", "ws_close"
    path: str
    method: str = ""
    event_type: str = ""
    status: int = 0
    conversation_id: str | None = None
    audio_bytes: int = 0
    body: dict[str, Any] | None = None  # parsed JSON / form fields, never headers


class RequestLog:
    """Append-only record of what the emulator saw and sent. Thread-safe."""

    def __init__(self) -> None:
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: LogEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self._entries)

    def since(self, start: int) -> list[LogEntry]:
        """Entries from index ``start`` on: cheap incremental polling of a long log."""
        with self._lock:
            return self._entries[start:]

    def size(self) -> int:
        """How many entries the log holds."""
        with self._lock:
            return len(self._entries)

    def of(self, kind: str | None = None, path: str | None = None) -> list[LogEntry]:
        return [
            e
            for e in self.entries
            if (kind is None or e.kind == kind) and (path is None or e.path.startswith(path))
        ]

    def event_types(self, kind: str) -> list[str]:
        return [e.event_type for e in self.entries if e.kind == kind]

    def audio_bytes_received(self) -> int:
        return sum(e.audio_bytes for e in self.entries if e.kind in ("ws_in", "http"))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def speech_like_pcm(text: str, rate: int = RATE, seconds_per_char: float = 0.055) -> np.ndarray:
    """Float32 mono audio whose length follows ``text``: a voiced harmonic tone with a
    syllable-rate envelope and small pauses between words. Deterministic."""
    words = text.split() or [""]
    pieces: list[np.ndarray] = []
    for i, word in enumerate(words):
        n = max(int(rate * seconds_per_char * max(len(word), 2)), 1)
        t = np.arange(n, dtype=np.float64) / rate
        f0 = 140.0 + 25.0 * math.sin(i)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
        # one smooth rise-and-fall over the whole word: no silent gap inside a long word,
        # which a VAD would take for the end of the turn
        envelope = np.sqrt(np.sin(np.pi * (t + 0.5 / rate) / (n / rate)))
        pieces.append((0.25 * voiced * envelope).astype(np.float32))
        pieces.append(np.zeros(int(rate * 0.04), dtype=np.float32))
    return np.concatenate(pieces)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmulatorServer:
    """An aiohttp app on 127.0.0.1. Subclasses add routes in :meth:`build_app`.

    Use ``await server.start()`` / ``await server.stop()`` inside a running loop, or
    :meth:`start_in_thread` for synchronous callers (the loop then runs in a daemon thread).
    """

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.script = Script()
        self.timing = Timing()
        self.faults = Faults()
        self.log = RequestLog()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """scheme://host:port with no ``/v1`` (what the config's ``baseUrl`` holds)."""
        return f"http://127.0.0.1:{self.port}"

    def build_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    async def start(self) -> None:
        if not self.port:
            self.port = free_port()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="emulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("emulator did not start within 10 s")

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
            self._thread = None

    async def pace(self, seconds: float) -> None:
        """Sleep for a scripted delay (skipped when zero)."""
        if seconds > 0:
            await asyncio.sleep(seconds)


async def paced_chunks(
    pcm: np.ndarray,
    timing: Timing,
    send: Callable[[np.ndarray], Awaitable[None]],
    rate: int = RATE,
) -> None:
    """Send ``pcm`` in ``timing.chunk_ms`` chunks, paced by ``timing.audio_pace``."""
    step = max(int(rate * timing.chunk_ms / 1000), 1)
    started = time.monotonic()
    for offset in range(0, len(pcm), step):
        await send(pcm[offset : offset + step])
        if timing.audio_pace > 0:
            due = started + (offset + step) / rate / timing.audio_pace
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
