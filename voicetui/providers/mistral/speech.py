"""Speaking: the agent's text pieces → Voxtral TTS → float32 24 kHz PCM, in order.

One :class:`SpeechPipeline` per reply. Pieces arrive from the chunker while the agent is still
writing; the pipeline sends each one on at once:

* preferred: the realtime speech WebSocket (one socket per reply, usually opened ahead of
  time by the session so its handshake is off the critical path): ``input_text.append`` +
  ``input_text.flush`` per piece, ``input_text.end`` after the last;
* fallback: one REST ``audio.speech.complete_async(stream=True)`` SSE request per piece, in
  order — used when the socket cannot be opened, or for the rest of a reply whose socket
  died (re-synthesising from the last confirmed piece and skipping the samples already
  received, so nothing is heard twice).

``pcm`` is base64 of float32 little-endian samples; a delta whose byte length is not a
multiple of 4 leaves a remainder that is carried into the next delta.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voicetui.audio.ports import Float32Array
from voicetui.engine.tasks import cancel_and_wait
from voicetui.providers.base import ProviderError
from voicetui.providers.mistral.retry import (
    RetryPolicy,
    call_with_retries,
    classify,
    reraise_if_cancelling,
)

if TYPE_CHECKING:
    from mistralai.client import Mistral
    from mistralai.extra.realtime import RealtimeSpeechConnection

TTS_RATE = 24_000
DONE_QUIET_S = 1.5  # after the last `done`, this much silence means the reply is complete
SOCKET_IDLE_S = 15.0  # no event for this long after `end`: the speech socket is dead


class PcmDecoder:
    """base64 float32 LE deltas → float32 arrays, carrying partial samples between deltas."""

    def __init__(self) -> None:
        self._carry = b""

    def decode(self, audio_b64: str) -> Float32Array:
        data = self._carry + base64.b64decode(audio_b64)
        whole = len(data) // 4 * 4
        self._carry = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<f4").astype(np.float32)
        return np.clip(samples, -1.0, 1.0, out=samples)

    def reset(self) -> None:
        self._carry = b""


@dataclass
class SpeechStats:
    """What a reply's speech cost and when it happened (monotonic seconds)."""

    transport: str = "none"  # "realtime" | "rest" | "realtime+rest"
    first_request_at: float | None = None
    first_audio_at: float | None = None
    samples: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    fallback_reason: str = ""

    @property
    def audio_seconds(self) -> float:
        return self.samples / TTS_RATE


@dataclass
class _Piece:
    text: str
    done: bool = False  # the service confirmed all audio of this piece


class WarmSocket:
    """A realtime speech socket opened ahead of need (the handshake costs a round trip)."""

    def __init__(self, task: asyncio.Task[RealtimeSpeechConnection]) -> None:
        self.task = task
        self.opened_at = time.monotonic()

    async def discard(self) -> None:
        await cancel_and_wait(self.task)
        if self.task.cancelled() or self.task.exception() is not None:
            return
        with contextlib.suppress(Exception):
            await self.task.result().close()


async def open_realtime_speech(
    client: Mistral, *, model: str, voice: str | None, timeout_ms: int
) -> RealtimeSpeechConnection:
    """Open the realtime TTS socket for float32 PCM."""
    return await client.audio.realtime_speech.connect(
        model, voice_id=voice, response_format="pcm", timeout_ms=timeout_ms
    )


@dataclass
class SpeechOptions:
    model: str
    voice: str | None  # None = the service default
    timeout_ms: int = 15_000
    prefer_realtime: bool = True
    policy: RetryPolicy = field(default_factory=RetryPolicy)


class SpeechPipeline:
    """Speaks one reply. ``say`` never blocks; ``finish`` waits for the last sample."""

    def __init__(
        self,
        client: Mistral,
        options: SpeechOptions,
        *,
        on_audio: Callable[[Float32Array], None],
        log: logging.Logger,
        warm: WarmSocket | None = None,
        on_realtime_unavailable: Callable[[str], None] | None = None,
        on_piece_done: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        self._on_piece_done = on_piece_done
        self._opt = options
        self._on_audio = on_audio
        self._log = log
        self._warm = warm
        self._on_realtime_unavailable = on_realtime_unavailable
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._pieces: list[_Piece] = []
        self._confirmed = 0  # pieces whose audio the service confirmed complete
        self._notified = 0  # pieces the owner was told are complete
        self._samples_since_confirmed = 0
        self._ws_failed = False
        self._end_sent = False
        self._done_after_end = False
        self._last_rx = time.monotonic()
        self.stats = SpeechStats()
        self._pump = asyncio.create_task(self._run(), name="mistral-tts")

    @property
    def spoken_text(self) -> str:
        """Everything handed to TTS so far."""
        return " ".join(p.text for p in self._pieces)

    def say(self, text: str) -> None:
        """Queue a piece of text to be spoken after the previous ones."""
        if text.strip():
            self._queue.put_nowait(text.strip())

    async def finish(self) -> None:
        """No more text: wait until all audio has been received (raises ProviderError)."""
        self._queue.put_nowait(None)
        await asyncio.shield(self._pump)

    async def cancel(self) -> None:
        """Barge-in: stop at once and close the stream(s)."""
        await cancel_and_wait(self._pump)
        if self._warm is not None:
            await self._warm.discard()
            self._warm = None

    # -- internals ------------------------------------------------------------------------

    def _deliver(self, pcm: Float32Array) -> None:
        if pcm.size == 0:
            return
        if self.stats.first_audio_at is None:
            self.stats.first_audio_at = time.monotonic()
        self.stats.samples += int(pcm.size)
        self._samples_since_confirmed += int(pcm.size)
        self._on_audio(pcm)

    def _mark_request(self) -> None:
        self.stats.requests += 1
        if self.stats.first_request_at is None:
            self.stats.first_request_at = time.monotonic()

    def _add_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.stats.input_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        self.stats.output_tokens += int(getattr(usage, "completion_tokens", 0) or 0)

    async def _open_ws(self, *, use_warm: bool = True) -> RealtimeSpeechConnection | None:
        if not self._opt.prefer_realtime:
            return None
        warm, self._warm = (self._warm, None) if use_warm else (None, self._warm)
        conn: RealtimeSpeechConnection | None = None
        if warm is not None:
            try:
                conn = await warm.task
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = classify(exc, what="opening the speech socket")
                if err.code == "key_rejected":
                    raise err from exc
                self._log.info("warm speech socket failed (%s); opening a fresh one", err)
        if conn is None:
            try:
                conn = await open_realtime_speech(
                    self._client,
                    model=self._opt.model,
                    voice=self._opt.voice,
                    timeout_ms=self._opt.timeout_ms,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = classify(exc, what="opening the speech socket")
                if err.code == "key_rejected":
                    raise err from exc
                self.stats.fallback_reason = str(err)
                self._log.warning("realtime speech unavailable (%s); using REST", err)
                if self._on_realtime_unavailable is not None:
                    self._on_realtime_unavailable(str(err))
                return None
        return conn

    async def _ws_send(self, conn: RealtimeSpeechConnection, text: str) -> bool:
        """Append one piece and flush it (the service starts speaking it at once)."""
        try:
            await conn.send_text(text + " ")
            await conn.flush()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._ws_failed = True
            self._log.warning("speech socket send failed: %s", exc)
            return False

    async def _run(self) -> None:
        conn = await self._open_ws()
        receiver: asyncio.Task[None] | None = None
        reopened = False
        try:
            if conn is not None:
                self.stats.transport = "realtime"
                receiver = asyncio.create_task(self._receive(conn), name="mistral-tts-recv")
            while True:
                text = await self._queue.get()
                if text is None:
                    break
                if not text:  # wake-up from the receiver: the socket died mid-reply
                    if self._ws_failed and self.stats.samples:
                        await self._rest_catch_up()
                    continue
                self._pieces.append(_Piece(text))
                fresh = self.stats.samples == 0 and not reopened
                if conn is not None and (not self._ws_failed or fresh):
                    if len(self._pieces) == 1:
                        self._mark_request()
                    if not self._ws_failed and await self._ws_send(conn, text):
                        continue
                    if fresh:
                        # a socket opened ahead of time may have been closed while idle:
                        # one fresh socket, then everything so far again
                        reopened = True
                        if receiver is not None:
                            await cancel_and_wait(receiver)
                        with contextlib.suppress(Exception):
                            await conn.close()
                        conn = await self._open_ws(use_warm=False)
                        if conn is not None:
                            self._ws_failed = False
                            receiver = asyncio.create_task(
                                self._receive(conn), name="mistral-tts-recv"
                            )
                            sent = True
                            for piece in self._pieces:
                                sent = sent and await self._ws_send(conn, piece.text)
                            if sent:
                                continue
                await self._rest_catch_up()
            if conn is not None and not self._ws_failed:
                try:
                    self._end_sent = True
                    await conn.end()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._ws_failed = True
                    self._log.warning("speech socket end failed: %s", exc)
            if receiver is not None:
                await self._await_receiver(receiver)
            if self._ws_failed:
                await self._rest_catch_up()
        finally:
            if receiver is not None:
                await cancel_and_wait(receiver)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _await_receiver(self, receiver: asyncio.Task[None]) -> None:
        """Wait for the socket's last audio. Services differ in how they end a reply (one
        ``done`` after ``end``, one per flush, or just a close), so a socket that has
        confirmed every piece and then goes quiet is done, and one silent for
        :data:`SOCKET_IDLE_S` mid-reply has failed (the rest goes over REST)."""
        while not receiver.done():
            await asyncio.wait({receiver}, timeout=0.25)
            reraise_if_cancelling()
            if receiver.done():
                break
            quiet = time.monotonic() - self._last_rx
            complete = self._confirmed >= len(self._pieces) or self._done_after_end
            if (complete and quiet >= DONE_QUIET_S) or quiet >= SOCKET_IDLE_S:
                if complete:
                    self._confirm_all()
                else:
                    self._ws_failed = True
                    self._log.warning("speech socket silent for %.0f s; using REST", quiet)
                await cancel_and_wait(receiver)
                break

    async def _receive(self, conn: RealtimeSpeechConnection) -> None:
        from mistralai.client.models import (
            RealtimeSpeechError,
            SpeechStreamAudioDelta,
            SpeechStreamDone,
        )
        from mistralai.extra.realtime import UnknownRealtimeEvent

        decoder = PcmDecoder()
        try:
            async for event in conn:
                self._last_rx = time.monotonic()
                if isinstance(event, SpeechStreamAudioDelta):
                    self._deliver(decoder.decode(event.audio_data))
                elif isinstance(event, SpeechStreamDone):
                    self._add_usage(event.usage)
                    self._confirm_piece()
                    if self._end_sent and self._confirmed >= len(self._pieces):
                        return
                elif isinstance(event, RealtimeSpeechError):
                    self._log.warning("speech socket error event: %s", event.error)
                    self._ws_failed = True
                    break
                elif isinstance(event, UnknownRealtimeEvent):
                    self._log.info("ignored speech event %s (%s)", event.type, event.error)
            reraise_if_cancelling()
            if self._end_sent and self._done_after_end:
                self._confirm_all()  # `done` after `end`, then a normal close: complete
            elif not (self._end_sent and self._confirmed >= len(self._pieces)):
                self._ws_failed = True
                self._log.warning("speech socket closed before the reply was spoken")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # socket drop: the rest goes over REST
            self._ws_failed = True
            self._log.warning("speech socket dropped: %s", classify(exc, what="speaking"))
        if self._ws_failed:
            self._queue.put_nowait("")  # wake the pump: catch up now, not at the next piece

    def _confirm_piece(self) -> None:
        # Services may send one `done` per flushed piece or a single one after `end`; both
        # count as "everything before it is complete" for the oldest unconfirmed piece, and
        # a `done` after `end` followed by a close or silence ends the reply.
        self._confirmed = min(self._confirmed + 1, len(self._pieces))
        self._samples_since_confirmed = 0
        self._done_after_end = self._done_after_end or self._end_sent
        if not self._end_sent:
            # before `end`, a `done` closes exactly one piece; after it, one `done` may cover
            # them all, so the owner hears of those together (at close, silence, or the end)
            self._notify_confirmed()

    def _confirm_all(self) -> None:
        self._confirmed = len(self._pieces)
        self._samples_since_confirmed = 0
        self._notify_confirmed(together=True)

    def _notify_confirmed(self, *, together: bool = False) -> None:
        """Tell the owner (the reply ledger aligns each piece's text to its audio with this)
        which pieces have all their audio: one by one, or ``together`` when one confirmation
        covered several pieces."""
        n = self._confirmed
        if self._on_piece_done is None:
            self._notified = n
            return
        if together and n - self._notified > 1:
            self._notified = n
            self._on_piece_done(True)
            return
        while self._notified < n:
            self._notified += 1
            self._on_piece_done(False)

    async def _rest_catch_up(self) -> None:
        """Speak every unconfirmed piece over REST, in order, skipping audio already heard."""
        if self.stats.transport == "realtime":
            self.stats.transport = "realtime+rest"
        elif self.stats.transport == "none":
            self.stats.transport = "rest"
        skip = self._samples_since_confirmed
        while self._confirmed < len(self._pieces):
            piece = self._pieces[self._confirmed]
            skip = await self._rest_piece(piece.text, skip)
            piece.done = True
            self._confirmed += 1
            self._samples_since_confirmed = 0
            self._notify_confirmed()

    async def _rest_piece(self, text: str, skip: int) -> int:
        """One REST SSE request; drop the first ``skip`` samples; return the skip left."""
        from mistralai.client.models import SpeechStreamAudioDelta, SpeechStreamDone

        async def open_stream() -> Any:
            self._mark_request()
            return await self._client.audio.speech.complete_async(
                input=text,
                model=self._opt.model,
                voice_id=self._opt.voice,
                response_format="pcm",
                stream=True,
                timeout_ms=self._opt.timeout_ms,
            )

        try:
            stream = await call_with_retries(
                open_stream, what="speaking", policy=self._opt.policy, log=self._log
            )
        except ProviderError as err:
            if err.code == "not_found" and self._opt.voice:
                raise ProviderError(
                    f"Mistral does not know the voice {self._opt.voice!r}; "
                    "pick another voice in the settings",
                    code="config",
                ) from err
            raise
        if not hasattr(stream, "__aiter__"):
            raise ProviderError("Mistral speech answered without a stream", code="protocol")
        decoder = PcmDecoder()
        try:
            async with stream:
                async for event in stream:
                    data = event.data
                    if isinstance(data, SpeechStreamAudioDelta):
                        pcm = decoder.decode(data.audio_data)
                        if skip:
                            drop = min(skip, int(pcm.size))
                            pcm, skip = pcm[drop:], skip - drop
                        self._deliver(pcm)
                    elif isinstance(data, SpeechStreamDone):
                        self._add_usage(data.usage)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # mid-stream drop: what was received is kept, go on
            self._log.warning("speech stream broke mid-piece: %s", classify(exc, what="speaking"))
        return skip
