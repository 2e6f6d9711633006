"""The two realtime WebSockets of the Mistral emulator.

Transcription (``/v1/audio/transcriptions/realtime``)
    ``session.created`` first; ``session.update`` → ``session.updated``; ``input_audio.append``
    audio is decoded in the session's ``audio_format`` and cut into 20 ms windows. An utterance
    takes the next scripted turn (cursor ``"realtime"``) when speech begins (the first window
    above ``emu.speech_threshold_dbfs``; an utterance of silence only ends with an empty
    ``done`` and consumes no turn); its words are sent as
    ``transcription.text.delta`` in proportion to the audio time since its speech began (the
    length ``speech_like_pcm(user_text)`` would have), the first one not before
    ``timing.first_transcript_delay_s`` after speech began, the last one held back until the
    utterance ends. ``input_audio.flush`` ends the utterance (remaining deltas, a
    ``transcription.segment``, ``transcription.done``) and keeps the socket open;
    ``input_audio.end`` does the same, then closes with 1000. With ``turn_detection`` in the
    session, utterances are cut from the ENERGY of the received audio: ``turn.start`` after 40 ms
    above ``emu.speech_threshold_dbfs``, ``turn.eager_end`` after half of ``min_silence_ms`` of
    silence, ``turn.resume`` if speech returns after that, ``turn.end`` (``end_reason``
    ``"threshold"``) after ``min_silence_ms`` — or ``"timeout"`` after ``end_timeout_ms`` if that is
    shorter (the emulator's reading of that knob) — followed by the utterance's ``done``. A flush
    with no audio since the last ``done`` answers a ``done`` with empty text. Changing
    ``audio_format`` or ``target_streaming_delay_ms`` after audio answers an ``error`` event.

Speech (``/v1/audio/speech/realtime``)
    ``session.created`` (default voice null, ``pcm``, ``responsive``); ``session.update`` (key
    ``voice``; an unknown voice closes the socket with 4404 like the service);
    ``input_text.append`` buffers text; ``input_text.flush`` (optionally with ``text``)
    synthesizes the buffered text as ``speech.audio.delta`` (float32 LE mono 24 kHz, paced by
    ``timing.audio_pace``; ``timing.first_audio_delay_s`` before the socket's first audio);
    ``input_text.end`` synthesizes the rest, sends ``speech.audio.done`` with usage and closes
    with 1000. Formats other than ``pcm`` are sent as 16-bit WAV per flushed piece.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import WSMsgType, web

from voicetui.testing.emulators.common import RATE, LogEntry, paced_chunks, speech_like_pcm
from voicetui.testing.emulators.mistral_stream import (
    ARRIVED_AT,
    StreamDropped,
    WSOutlet,
    dbfs,
    decode_pcm,
    loggable,
    word_pieces,
)

if TYPE_CHECKING:
    from voicetui.testing.emulators.mistral import MistralEmulator


def spread_segments(
    segments: list[tuple[str, str]], start: float, end: float
) -> list[tuple[str, str, float, float]]:
    """The batch endpoint's spreading of scripted segments (imported lazily: no cycle)."""
    from voicetui.testing.emulators.mistral import spread_segments as spread

    return spread(segments, start, end)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WINDOW_S = 0.02
_SPEECH_FORMATS = ("pcm", "wav", "mp3", "flac", "opus")
_CLOSE = object()  # writer-queue sentinel: close the socket normally


def expected_speech_s(text: str) -> float:
    """How long ``speech_like_pcm(text)`` lasts, without synthesizing it."""
    return sum(
        max(int(RATE * 0.055 * max(len(w), 2)), 1) / RATE + 0.04 for w in (text.split() or [""])
    )


async def _reject(emu: MistralEmulator, request: web.Request) -> web.Response | None:
    """A key the emulator does not accept, or the handshake-rejection fault: answer the
    upgrade request with a plain HTTP status."""
    if not emu.key_ok(request):
        status: int | None = 401
    elif not emu.fault_in_scope(request.path):
        return None
    else:
        status = emu.faults.take_ws_reject()
    if status is None:
        return None
    emu.log.add(LogEntry(at=time.monotonic(), kind="ws_reject", path=request.path, status=status))
    return web.json_response({"detail": "Unauthorized"}, status=status)


class _Socket:
    """Shared plumbing: an ordered writer queue of (not-before time, event) and the log."""

    channel = ""

    def __init__(self, emu: MistralEmulator, request: web.Request) -> None:
        self.emu = emu
        self.request = request
        self.path = request.path
        self.ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        self.out = WSOutlet(emu, self.ws, self.path, self.channel)
        self.queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self.model = request.query.get("model", "")

    def emit(self, event: dict[str, Any] | object, not_before: float = 0.0) -> None:
        """Queue an event (or a job / ``_CLOSE``), not to be sent before ``not_before``."""
        self.queue.put_nowait((not_before, event))

    async def writer(self) -> None:
        """Send queued events in order, honouring their not-before times."""
        while True:
            not_before, item = await self.queue.get()
            delay = not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if item is _CLOSE:
                await self.ws.close(code=1000)
                return
            try:
                if isinstance(item, dict):
                    await self.out.send(item)
                else:
                    await self.produce(item)
            except StreamDropped:
                return
            except ConnectionResetError:
                return

    async def produce(self, item: Any) -> None:
        """Subclasses turn non-event queue items (jobs) into events."""

    async def handle(self, msg: dict[str, Any]) -> None:
        """React to one client frame."""
        raise NotImplementedError

    async def run(self) -> web.StreamResponse:
        """Serve the connection: handshake faults, then read frames until the close."""
        rejected = await _reject(self.emu, self.request)
        if rejected is not None:
            return rejected
        await self.ws.prepare(self.request)
        self.emu.open_sockets.add(self.ws)
        self.emu.log.add(
            LogEntry(
                at=self.request.get(ARRIVED_AT, time.monotonic()),
                kind="ws_open",
                path=self.path,
                body={"model": self.model},
            )
        )
        self.opened()
        writer = asyncio.create_task(self.writer())
        try:
            async for raw in self.ws:
                if raw.type != WSMsgType.TEXT:
                    continue
                try:
                    msg = json.loads(raw.data)
                except json.JSONDecodeError:
                    msg = None
                if not isinstance(msg, dict):
                    self._log_in("", {"invalid": str(raw.data)[:200]}, 0)
                    self.emit(self.error_event("Invalid JSON message", 4000))
                    continue
                await self.handle(msg)
        finally:
            self.emu.open_sockets.discard(self.ws)
            if not writer.done():
                # let queued events drain when the client closed only its side
                try:
                    await asyncio.wait_for(asyncio.shield(writer), 0.05)
                except (TimeoutError, asyncio.CancelledError):
                    writer.cancel()
            self.emu.log.add(
                LogEntry(
                    at=time.monotonic(),
                    kind="ws_close",
                    path=self.path,
                    status=self.ws.close_code or 0,
                )
            )
        return self.ws

    def opened(self) -> None:
        """Queue the first events (``session.created``)."""

    def error_event(self, message: str, code: int) -> dict[str, Any]:
        """A realtime ``error`` event."""
        return {"type": "error", "error": {"message": message, "code": code}}

    def _log_in(self, event_type: str, body: dict[str, Any], audio_bytes: int) -> None:
        self.emu.log.add(
            LogEntry(
                at=time.monotonic(),
                kind="ws_in",
                path=self.path,
                event_type=event_type,
                audio_bytes=audio_bytes,
                body=loggable(body),
            )
        )


@dataclass
class _Utterance:
    opened_at: float  # stream time of the first audio of the utterance
    pieces: list[str] = field(default_factory=list)  # bound when speech begins
    text: str = ""
    expected_s: float = 0.0
    bound: bool = False
    speech_t: float | None = None  # stream time speech began
    speech_wall: float | None = None  # monotonic time speech began (for the first delay)
    sent: int = 0
    audio_s: float = 0.0
    silence_s: float = 0.0
    eager: bool = False
    speakers: list[tuple[str, str]] = field(default_factory=list)  # scripted (speaker, text)


class TranscriptionSocket(_Socket):
    """One realtime transcription connection."""

    channel = "ws:stt"

    def __init__(self, emu: MistralEmulator, request: web.Request) -> None:
        super().__init__(emu, request)
        self.session: dict[str, Any] = {
            "request_id": str(uuid.uuid4()),
            "model": self.model,
            "audio_format": {"encoding": "pcm_s16le", "sample_rate": 16000},
            "target_streaming_delay_ms": 240,
            "diarize": False,
        }
        self.carry = np.zeros(0, dtype=np.float32)
        self.stream_t = 0.0  # seconds of audio received so far
        self.utt: _Utterance | None = None
        self.loud_run = 0
        self.language_sent = False
        self.ended = False
        self.supports_turns = False

    def opened(self) -> None:
        info = self.emu.model_info(self.model)
        if info is None or info.role != "stt" or not info.has("streaming"):
            # an unknown, shut-down or non-realtime model: the service answers the handshake
            # with an error event (the SDK raises RealtimeTranscriptionWSError) and closes;
            # the message and code are Mistral's "invalid_model" (mistralai/mistral-vibe#617)
            self.ended = True
            self.emit(self.error_event(f"Invalid model: {self.model}", 1500))
            self.emit(_CLOSE)
            return
        self.supports_turns = info.has("turn_detection")
        self.emit({"type": "session.created", "session": dict(self.session)})

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td = self.session.get("turn_detection")
        return td if isinstance(td, dict) else None

    async def handle(self, msg: dict[str, Any]) -> None:
        kind = str(msg.get("type", ""))
        if kind == "input_audio.append":
            try:
                data = base64.b64decode(str(msg.get("audio", "")), validate=True)
            except (binascii.Error, ValueError):
                self._log_in(kind, msg, 0)
                self.emit(self.error_event("Invalid base64 audio", 4001))
                return
            self._log_in(kind, msg, len(data))
            if not self.ended:
                self.feed(data)
            return
        self._log_in(kind, msg, 0)
        if kind == "session.update":
            self.update(msg.get("session") or {})
        elif kind == "input_audio.flush":
            self.finish()
        elif kind == "input_audio.end":
            if not self.ended:
                self.ended = True
                self.finish()
                self.emit(_CLOSE)
        else:
            self.emit(self.error_event(f"Unknown message type: {kind}", 4002))

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a ``session.update`` and answer ``session.updated``.

        The service's rules (https://docs.mistral.ai/studio/audio/speech-to-text/turn-detection):
        no session field changes once audio has started; ``turn_detection`` needs a model that
        has it (the emulator answers 422, the validation status of the service's REST side);
        diarization and turn detection are refused together.
        """
        if self.stream_t > 0 or self.carry.size:
            late = [k for k in patch if patch[k] is not None]
            if late:
                late_msg = "Session fields cannot be changed after audio has started"
                self.emit(self.error_event(late_msg, 4003))
                return
        turns = patch.get("turn_detection", self.session.get("turn_detection"))
        diarize = patch.get("diarize", self.session.get("diarize"))
        if patch.get("turn_detection") is not None and not self.supports_turns:
            self.emit(self.error_event(f"Model {self.model} does not support turn_detection", 422))
            return
        if turns is not None and diarize:
            self.emit(self.error_event("Diarization is not compatible with turn detection", 422))
            return
        for key in (
            "audio_format",
            "target_streaming_delay_ms",
            "diarize",
            "context_bias",
            "language",
            "turn_detection",
        ):
            if key in patch and patch[key] is not None:
                self.session[key] = patch[key]
        refs = patch.get("speaker_references")
        if isinstance(refs, dict):
            self.session["speaker_references"] = list(refs)
        self.emit({"type": "session.updated", "session": dict(self.session)})

    # -- audio → events -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Decode appended audio and run it through the 20 ms windows."""
        fmt = self.session["audio_format"]
        rate = int(fmt.get("sample_rate", 16000))
        pcm = decode_pcm(data, str(fmt.get("encoding", "pcm_s16le")))
        self.carry = np.concatenate([self.carry, pcm]) if self.carry.size else pcm
        win = max(int(rate * WINDOW_S), 1)
        while self.carry.size >= win:
            block, self.carry = self.carry[:win], self.carry[win:]
            self.window(dbfs(block) > self.emu.speech_threshold_dbfs)
        self.emit_due()

    def open_utterance(self) -> _Utterance:
        """Start a new utterance at the current stream time."""
        self.utt = _Utterance(opened_at=self.stream_t)
        return self.utt

    def begin_speech(self, utt: _Utterance, start: float) -> None:
        """Speech began: the utterance takes the next scripted turn (cursor ``"realtime"``)."""
        turn = self.emu.next_turn("realtime")
        utt.pieces = word_pieces(turn.user_text)
        utt.speakers = turn.speaker_segments()
        utt.text = "".join(utt.pieces)
        utt.expected_s = expected_speech_s(turn.user_text)
        utt.bound = True
        utt.speech_t = start
        utt.speech_wall = time.monotonic()

    def window(self, loud: bool) -> None:
        """Advance one 20 ms window (``loud``: above the speech threshold)."""
        self.stream_t += WINDOW_S
        td = self.turn_detection
        if td is None:  # push-to-talk: every appended block belongs to the open utterance
            utt = self.utt or self.open_utterance()
            utt.audio_s += WINDOW_S
            utt.silence_s = 0.0 if loud else utt.silence_s + WINDOW_S
            if loud and not utt.bound:
                self.begin_speech(utt, round(self.stream_t - WINDOW_S, 3))
            return
        min_silence = float(td.get("min_silence_ms") or 500) / 1000.0
        if self.utt is None:
            self.loud_run = self.loud_run + 1 if loud else 0
            if self.loud_run >= 2:
                start = round(self.stream_t - self.loud_run * WINDOW_S, 3)
                utt = self.open_utterance()
                self.begin_speech(utt, start)
                utt.audio_s = self.loud_run * WINDOW_S
                self.loud_run = 0
                self.emit({"type": "turn.start", "time_s": start})
            return
        utt = self.utt
        utt.audio_s += WINDOW_S
        if loud:
            if utt.eager:
                utt.eager = False
                self.emit({"type": "turn.resume", "time_s": round(self.stream_t, 3)})
            utt.silence_s = 0.0
            return
        utt.silence_s += WINDOW_S
        if (
            not utt.eager
            and td.get("eager_end_threshold") is not None
            and utt.silence_s >= min_silence / 2
        ):
            utt.eager = True
            self.emit({"type": "turn.eager_end", "time_s": round(self.stream_t, 3)})
        timeout_ms = td.get("end_timeout_ms")
        by_timeout = timeout_ms is not None and utt.silence_s >= float(timeout_ms) / 1000.0 - 1e-9
        if utt.silence_s >= min_silence - 1e-9 or by_timeout:
            self.emit_due(final=True)
            reason = "threshold" if utt.silence_s >= min_silence - 1e-9 else "timeout"
            self.emit({"type": "turn.end", "time_s": round(self.stream_t, 3), "end_reason": reason})
            self.close_utterance()

    def _not_before(self, utt: _Utterance) -> float:
        wall = utt.speech_wall if utt.speech_wall is not None else time.monotonic()
        return wall + self.emu.timing.first_transcript_delay_s

    def emit_due(self, final: bool = False) -> None:
        """Queue the words due so far (all of them when ``final``)."""
        utt = self.utt
        if utt is None:
            return
        if final:
            due = len(utt.pieces)
        elif utt.speech_t is None:
            due = 0
        else:
            progress = (self.stream_t - utt.speech_t) / max(utt.expected_s, 1e-3)
            due = min(math.floor(len(utt.pieces) * progress), len(utt.pieces) - 1)
        if due <= utt.sent:
            return
        not_before = self._not_before(utt)
        if not self.language_sent:
            self.language_sent = True
            self.emit({"type": "transcription.language", "audio_language": "en"}, not_before)
        for piece in utt.pieces[utt.sent : due]:
            self.emit({"type": "transcription.text.delta", "text": piece}, not_before)
        utt.sent = due

    def close_utterance(self) -> None:
        """Queue the utterance's segment and ``transcription.done``."""
        utt = self.utt
        self.utt = None
        self.loud_run = 0
        if utt is None or not utt.bound or utt.speech_t is None:
            # nothing (or only silence) was said: an empty final, no scripted turn consumed
            self.emit(self._done("", utt.audio_s if utt else 0.0, []))
            return
        start = utt.speech_t
        end = round(max(self.stream_t - utt.silence_s, start), 3)
        segments: list[dict[str, Any]] = [{"text": utt.text, "start": round(start, 3), "end": end}]
        if self.session.get("diarize"):  # in-stream diarization: the script's speakers
            segments = [
                {"text": t, "start": s, "end": e, "speaker_id": spk}
                for spk, t, s, e in spread_segments(utt.speakers, start, end)
            ]
        not_before = self._not_before(utt)
        for segment in segments:
            self.emit({"type": "transcription.segment", **segment}, not_before)
        self.emit(self._done(utt.text, utt.audio_s, segments), not_before)

    def _done(self, text: str, audio_s: float, segments: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "type": "transcription.done",
            "model": self.model,
            "text": text,
            "language": self.session.get("language") or "en",
            "segments": [{"type": "transcription_segment", **s} for s in segments],
            "usage": {
                "prompt_tokens": 0,
                "completion_tokens": len(text.split()),
                "total_tokens": len(text.split()),
                "prompt_audio_seconds": math.ceil(audio_s),
            },
        }

    def finish(self) -> None:
        """End the open utterance now (flush / end)."""
        if self.utt is not None:
            self.emit_due(final=True)
        self.close_utterance()


@dataclass
class _SpeechJob:
    text: str


class SpeechSocket(_Socket):
    """One realtime speech connection."""

    channel = "ws:tts"

    def __init__(self, emu: MistralEmulator, request: web.Request) -> None:
        super().__init__(emu, request)
        self.session: dict[str, Any] = {
            "request_id": str(uuid.uuid4()),
            "model": self.model,
            "is_ref_audio": False,
            "streaming_mode": "responsive",
            "response_format": "pcm",
            "expressiveness": 1.0,
            "voice": None,
        }
        self.buffer = ""
        self.first_request_at: float | None = None
        self.audio_started = False
        self.words = 0
        self.chunks = 0
        self.ended = False

    def opened(self) -> None:
        info = self.emu.model_info(self.model)
        if info is None or info.role != "tts":
            self.ended = True  # as the transcription socket: invalid_model, then close
            self.emit(self.error_event(f"Invalid model: {self.model}", 1500))
            self.emit(_CLOSE)
            return
        self.emit({"type": "session.created", "session": dict(self.session)})

    async def handle(self, msg: dict[str, Any]) -> None:
        kind = str(msg.get("type", ""))
        self._log_in(kind, msg, 0)
        if self.ended:
            return
        if kind == "session.update":
            patch = msg.get("session") or {}
            if "voice" in patch and patch["voice"] is not None:
                voice = self.emu.known_voice(str(patch["voice"]))
                if voice is None:
                    # the service rejects unknown voices by closing the socket
                    self.ended = True
                    await self.ws.close(code=4404, message=b"Voice not found")
                    return
                self.session["voice"] = voice
            if patch.get("ref_audio"):
                self.session["is_ref_audio"] = True
            if patch.get("response_format") in _SPEECH_FORMATS:
                self.session["response_format"] = patch["response_format"]
            if patch.get("streaming_mode") in ("responsive", "long_form"):
                self.session["streaming_mode"] = patch["streaming_mode"]
            if isinstance(patch.get("expressiveness"), int | float):
                self.session["expressiveness"] = float(patch["expressiveness"])
            self.emit({"type": "session.updated", "session": dict(self.session)})
        elif kind == "input_text.append":
            self.buffer += str(msg.get("text") or "")
        elif kind in ("input_text.flush", "input_text.end"):
            self.buffer += str(msg.get("text") or "")
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
            if self.buffer.strip() and not (self.session["voice"] or self.session["is_ref_audio"]):
                # no voice was ever set: every documented speech call passes one
                self.emit(self.error_event("voice_id or ref_audio is required", 422))
                self.buffer = ""
                return
            if self.buffer.strip():
                self.emit(_SpeechJob(self.buffer))
            self.buffer = ""
            if kind == "input_text.end":
                self.ended = True
                self.emit(_SpeechJob(""))  # marker: done after the queued audio
                self.emit(_CLOSE)
        else:
            self.emit(self.error_event(f"Unknown message type: {kind}", 4002))

    async def produce(self, item: Any) -> None:
        if not isinstance(item, _SpeechJob):
            return
        if not item.text:
            usage = {
                "prompt_tokens": self.words,
                "completion_tokens": self.chunks,
                "total_tokens": self.words + self.chunks,
            }
            await self.out.send({"type": "speech.audio.done", "usage": usage})
            return
        if not self.audio_started:
            self.audio_started = True
            due = (self.first_request_at or time.monotonic()) + self.emu.timing.first_audio_delay_s
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
        self.words += len(item.text.split())
        pcm = speech_like_pcm(item.text)
        fmt = self.session["response_format"]

        async def send(chunk: np.ndarray) -> None:
            self.chunks += 1
            if fmt == "pcm":
                data = chunk.astype("<f4").tobytes()
            else:
                from voicetui.testing.emulators.mistral import wav_bytes

                data = wav_bytes(chunk)
            await self.out.send(
                {"type": "speech.audio.delta", "audio_data": base64.b64encode(data).decode()}
            )

        await paced_chunks(pcm, self.emu.timing, send)


def transcription_socket(emu: MistralEmulator) -> Handler:
    """The aiohttp handler of ``/v1/audio/transcriptions/realtime``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await TranscriptionSocket(emu, request).run()

    return handler


def speech_socket(emu: MistralEmulator) -> Handler:
    """The aiohttp handler of ``/v1/audio/speech/realtime``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await SpeechSocket(emu, request).run()

    return handler
