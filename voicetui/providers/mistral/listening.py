"""Listening: one realtime transcription WebSocket per conversation.

Mic frames are appended as they arrive so the user's words come back live. The socket is
kept open across turns; a drop reconnects with backoff (1 s, 2 s, 4 s, capped) and the
session replays the open turn's audio, so a turn in progress survives. Malformed or unknown
events are logged and ignored; an error event is reported, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voicetui.audio.ports import ENGINE_RATE
from voicetui.providers.base import ProviderError
from voicetui.providers.mistral.retry import classify, reraise_if_cancelling

if TYPE_CHECKING:
    from mistralai.client import Mistral
    from mistralai.extra.realtime import RealtimeConnection

APPEND_MAX_BYTES = 200_000  # the service takes at most 262 144 decoded bytes per append


@dataclass(frozen=True, slots=True)
class ListenOptions:
    model: str
    server_vad: bool  # ask the service for turn detection (a model that has it)
    diarize: bool = False  # in-stream speaker labels (never with turn detection)
    min_silence_ms: int = 500
    sample_rate: int = ENGINE_RATE  # we send the engine's 24 kHz int16 as is: no resampling
    timeout_ms: int = 10_000
    max_reconnects: int = 5
    backoff_cap_s: float = 4.0


class Listener:
    """Owns the transcription socket; calls ``on_event`` for every parsed server event."""

    def __init__(
        self,
        client: Mistral,
        options: ListenOptions,
        *,
        on_event: Callable[[Any], Awaitable[None]],
        on_reconnecting: Callable[[int, float, str], None],
        on_reconnected: Callable[[int], Awaitable[None]],
        log: logging.Logger,
        on_key_rejected: Callable[[ProviderError], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._opt = options
        self._on_event = on_event
        self._on_reconnecting = on_reconnecting
        self._on_reconnected = on_reconnected
        self._on_key_rejected = on_key_rejected  # ctx.refresh_key: a fresh key, or raises
        self._log = log
        self._conn: RealtimeConnection | None = None
        self._closing = False
        self._ready = asyncio.Event()
        self.audio_bytes_sent = 0
        self._renew_audio: list[bytes] | None = None  # frames sent while renewing

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed and self._ready.is_set()

    async def open(self) -> None:
        """Connect (raises ProviderError; ``key_rejected`` for a 401 at the handshake)."""
        self._conn = await self._connect()
        self._ready.set()

    async def renew(self) -> None:
        """Session rollover: a new transcription socket replaces the open one. It is opened
        first and the old one closed after the switch, so every frame reaches one of them;
        the receive loop moves to the new socket by itself."""
        if not self.connected or self._closing:
            raise ProviderError(
                "the transcription socket is reconnecting", code="network", retryable=True
            )
        self._renew_audio = []
        try:
            new = await self._connect()
            sent = 0
            while sent < len(self._renew_audio):  # what the old socket got meanwhile
                chunk = self._renew_audio[sent]
                for offset in range(0, len(chunk), APPEND_MAX_BYTES):
                    await new.send_audio(chunk[offset : offset + APPEND_MAX_BYTES])
                sent += 1
        except ProviderError:
            raise
        except Exception as exc:
            raise classify(exc, what="opening the transcription socket") from exc
        finally:
            self._renew_audio = None
        # no await from the last replayed frame to here: nothing falls between the sockets
        old, self._conn = self._conn, new
        self._ready.set()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    async def _connect(self) -> RealtimeConnection:
        from mistralai.client.models import AudioFormat

        turn_detection: dict[str, Any] | None = None
        if self._opt.server_vad:
            turn_detection = {"min_silence_ms": self._opt.min_silence_ms}
        try:
            # every session field goes in the one session.update the SDK sends right after
            # session.created, before any audio: the service refuses changes after audio starts
            return await self._client.audio.realtime.connect(
                model=self._opt.model,
                audio_format=AudioFormat(encoding="pcm_s16le", sample_rate=self._opt.sample_rate),
                timeout_ms=self._opt.timeout_ms,
                turn_detection=turn_detection,  # type: ignore[arg-type]
                diarize=True if self._opt.diarize and turn_detection is None else None,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc, what="opening the transcription socket") from exc

    async def send(self, pcm_bytes: bytes) -> None:
        """Append audio; silently dropped while reconnecting (the session replays the turn)."""
        conn = self._conn
        if conn is None or conn.is_closed or not self._ready.is_set():
            return
        if self._renew_audio is not None:
            self._renew_audio.append(pcm_bytes)  # the new socket hears it too
        try:
            for offset in range(0, len(pcm_bytes), APPEND_MAX_BYTES):
                await conn.send_audio(pcm_bytes[offset : offset + APPEND_MAX_BYTES])
            self.audio_bytes_sent += len(pcm_bytes)
        except Exception as exc:  # the receive loop notices the drop and reconnects
            self._log.info("transcription append failed: %s", exc)

    async def flush(self) -> None:
        """End the current utterance (the service answers with its final text)."""
        conn = self._conn
        if conn is None or conn.is_closed:
            return
        with contextlib.suppress(Exception):
            await conn.flush_audio()

    async def run(self) -> None:
        """Receive loop with reconnects. Returns on close; raises ProviderError on give-up."""
        attempt = 0
        while not self._closing:
            conn = self._conn
            if conn is None:
                return
            reason = "the transcription socket closed"
            try:
                async for event in conn:
                    if self._conn is not conn:
                        break  # renewed: the old socket's last events are not ours
                    attempt = 0
                    await self._on_event(event)
                reraise_if_cancelling()
                if self.closing:
                    return
                if self._conn is not conn:
                    continue  # renewed (session rollover): receive from the new socket
            except asyncio.CancelledError:
                raise
            except ProviderError:
                raise
            except Exception as exc:
                if self.closing:
                    return
                if self._conn is not conn:
                    continue  # renewed (session rollover): receive from the new socket
                reason = str(classify(exc, what="listening"))
                self._log.warning("transcription socket dropped: %s", reason)
            self._ready.clear()
            # reconnect with backoff (1, 2, 4 s …); a rejected key stops at once
            while not self._closing:
                attempt += 1
                if attempt > self._opt.max_reconnects:
                    raise ProviderError(
                        f"lost the Mistral transcription socket ({reason}); "
                        f"gave up after {self._opt.max_reconnects} reconnects",
                        code="network",
                    )
                delay = min(self._opt.backoff_cap_s, 0.5 * 2 ** (attempt - 1))
                self._on_reconnecting(attempt, delay, reason)
                await asyncio.sleep(delay)
                try:
                    await self._reopen_with_fresh_key()
                except ProviderError as err:
                    if err.code == "key_rejected" or not err.retryable:
                        raise
                    reason = str(err)
                    continue
                await self._on_reconnected(attempt)
                break

    async def _reopen_with_fresh_key(self) -> None:
        """:meth:`open`; a rejected key (rotated since) is refreshed once through
        ``on_key_rejected``, which raises the line that ends the session when it cannot."""
        while True:
            try:
                await self.open()
                return
            except ProviderError as err:
                if err.code != "key_rejected" or self._on_key_rejected is None or self._closing:
                    raise
                await self._on_key_rejected(err)

    def mark_closing(self) -> None:
        """From now on a closed socket is the end, not a drop."""
        self._closing = True

    async def close(self) -> None:
        self._closing = True
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
