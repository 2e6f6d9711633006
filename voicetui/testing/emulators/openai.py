"""Loopback emulator of the OpenAI Realtime API (GA event names, ``openai`` 3.54.0).

One aiohttp server on 127.0.0.1 serves ``GET /v1/models[/{id}]``,
``POST /v1/realtime/client_secrets`` and the WebSocket ``/v1/realtime[?model=...]``, so the
real SDK talks to it with nothing but ``base_url=emu.base_url + "/v1"``. Behaviour follows
``shared/reference/openai-realtime-wire.md``: every server event carries ``event_id`` and every
field the SDK marks required; server VAD is decided from the *energy* of the PCM16 audio
actually received; responses stream interleaved transcript and audio deltas (real PCM whose
length follows the reply text) and can be cancelled by barge-in or ``response.cancel``.

Scripting (per test):

* ``emu.script.turns``: each user turn (a commit, manual or by VAD) consumes the next
  :class:`~.common.Turn`: ``user_text`` is the input transcription, ``segments`` the diarized
  segments (model ``gpt-4o-transcribe-diarize``; speakers become ``A``, ``B``... as the
  service labels them), ``reply`` the next response's text and audio.
* ``emu.timing``: ``first_transcript_delay_s`` (input transcription; >0 runs it alongside the
  response), ``first_token_delay_s`` / ``token_interval_s`` (transcript deltas),
  ``first_audio_delay_s`` / ``audio_pace`` / ``chunk_ms`` (audio deltas).
* ``emu.faults``: ``http_status`` x ``http_status_count`` (OpenAI error bodies, 429 with
  ``retry-after-ms``/``retry-after``), ``ws_reject_status`` (plain HTTP status before the
  upgrade -> ``websockets`` ``InvalidStatus``), ``drop_after_events`` / ``drop_close_code``
  (one-shot; 1005/1006 cut TCP without a close frame), ``malformed_after_events``,
  ``unknown_after_events`` (one-shot frames), ``stall_s`` (before every HTTP answer and
  every server frame).
* Emulator attributes: ``accepted_keys`` (None = any non-empty bearer; ``await
  emu.rotate_keys(key)`` switches it at runtime and drops the open sockets, as revoking the
  old key would), ``insufficient_quota``
  (429 bodies say so, with ``x-should-retry: false``), ``ws_reject_mode`` (``"http"`` or
  ``"error_close"``: accept, ``error`` event ``invalid_api_key``, close 1008),
  ``initial_turn_detection`` / ``instructions`` / ``voice`` (what ``session.created`` shows),
  ``session_max_s`` (then ``error`` ``session_expired`` and a close with
  ``session_expiry_close_code``), ``clock_skew_s`` (the server's wall clock minus the real one:
  ``expires_at`` and the handshake's ``Date`` header both carry it), ``fail_transcriptions`` /
  ``fail_responses`` (next N input transcriptions fail / responses end ``failed`` with a
  ``server_error``).

Observing: ``emu.log`` (kinds ``http``, ``ws_open``, ``ws_in``, ``ws_out``, ``ws_close``; audio
payloads replaced by their size, never the Authorization value), ``await emu.wait_for(kind,
event_type, timeout=...)`` (``wait_for_sync`` for threads), ``emu.sessions[-1]`` (``config``,
``items``, ``user_transcripts``, ``assistant_transcripts``, ``responses``,
``audio_bytes_received``, ``close_code``) and, with ``strict=True``, ``emu.violations`` /
``emu.client_violations`` (every frame validated strictly against the SDK's typed models by
:mod:`.strict_openai`; tests assert both stay empty).

Run by hand: ``python -m voicetui.testing.emulators.openai --port 8765 [--pace 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.utils
import itertools
import json
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from voicetui.testing.emulators.cli import (
    add_common_arguments,
    apply_common_arguments,
    serve_forever,
)
from voicetui.testing.emulators.common import (
    RATE,
    EmulatorServer,
    LogEntry,
    Turn,
    speech_like_pcm,
)
from voicetui.testing.emulators.strict import Violation, shorten

WS_PATH = "/v1/realtime"
BYTES_PER_MS = RATE * 2 // 1000  # PCM16 mono 24 kHz: 48 bytes per millisecond
MIN_COMMIT_MS = 100
VAD_FRAME = RATE // 100  # 10 ms analysis frames
DIARIZE_MODEL = "gpt-4o-transcribe-diarize"


def _account_models() -> list[dict[str, Any]]:
    """What a real account lists: every catalogue model that still works, with
    ``shutdown_date`` where one is announced (``GET /v1/models`` carries it: see
    https://developers.openai.com/api/docs/deprecations, "check each model's optional
    shutdown_date field")."""
    from voicetui.providers.catalog import catalog_for

    catalog = catalog_for("ai-voice-conv.openai")
    assert catalog is not None
    out: list[dict[str, Any]] = []
    for i, m in enumerate(catalog.models):
        if m.status_on() == "retired":
            continue  # shut down: gone from the listing, 404 on retrieve
        shutdown = m.shutdown.isoformat() if m.shutdown else None
        out.append({"id": m.id, "created": 1_740_000_000 + i * 86_400, "shutdown_date": shutdown})
    return out


MODELS: list[dict[str, Any]] = _account_models()
REALTIME_VOICES: tuple[str, ...] = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)  # the SDK's documented built-in voices (types/realtime/realtime_audio_config_output_param.py)


def known_model(model_id: str | None) -> bool:
    """Whether the account can use ``model_id`` (listed and not shut down)."""
    return any(m["id"] == model_id for m in MODELS)


def voice_problem(voice: Any) -> str | None:
    """Why ``voice`` is refused (``None`` if it is a built-in or a custom ``{"id": ...}``)."""
    if isinstance(voice, dict) and isinstance(voice.get("id"), str):
        return None
    if voice in REALTIME_VOICES:
        return None
    allowed = ", ".join(f"'{v}'" for v in REALTIME_VOICES)
    return f"Invalid value: '{voice}'. Supported values are: {allowed}."


def default_turn_detection() -> dict[str, Any]:
    """The documented ``server_vad`` defaults (what a fresh session reports)."""
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


# how a response that stopped early ends (``response.done.status``)
RESPONSE_STATUS_FOR_REASON = {
    "turn_detected": "cancelled",
    "client_cancelled": "cancelled",
    "max_output_tokens": "incomplete",
}
SEMANTIC_SILENCE_MS = {"low": 1000, "medium": 500, "auto": 500, "high": 200}


def effective_vad(td: dict[str, Any]) -> dict[str, Any]:
    """VAD parameters for either detector. ``semantic_vad`` has no threshold or silence
    settings; an energy emulator can only approximate "eagerness" as a silence window."""
    if td.get("type") == "semantic_vad":
        silence = SEMANTIC_SILENCE_MS.get(str(td.get("eagerness") or "auto"), 500)
        return {**td, "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": silence}
    return td


def vad_threshold_dbfs(threshold: float) -> float:
    """Map the 0..1 VAD ``threshold`` onto an RMS level: 0.5 -> -35 dBFS, 0.9 -> -19 dBFS.

    The hosted VAD is a model emitting a speech probability; an energy gate with a
    monotonic mapping keeps the knob meaningful (higher needs louder audio).
    """
    return -55.0 + 40.0 * min(max(threshold, 0.0), 1.0)


def pcm16_bytes(pcm: np.ndarray) -> bytes:
    """Float32 [-1, 1] -> PCM16 little-endian bytes."""
    clipped = np.clip(pcm, -1.0, 1.0)
    out: bytes = (clipped * 32767.0).astype("<i2").tobytes()
    return out


def word_tokens(text: str) -> list[str]:
    """Streaming tokens whose concatenation is exactly ``text`` (word plus trailing space)."""
    tokens = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    if tokens and lead:
        tokens[0] = lead + tokens[0]
    return tokens or ([text] if text else [])


def word_end_ms(text: str) -> list[float]:
    """Where each word of ``speech_like_pcm(text)`` ends, in ms (for truncation)."""
    ends: list[float] = []
    total = 0
    for word in text.split():
        total += len(speech_like_pcm(word))
        ends.append(total * 1000.0 / RATE)
    return ends


def error_body(
    status: int, *, quota: bool = False, model: str | None = None, url: str | None = None
) -> dict[str, Any]:
    """OpenAI-shaped HTTP error bodies (wire reference §6.2)."""
    if url is not None:
        err: dict[str, Any] = {
            "message": f"Invalid URL ({url})",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    elif status == 401:
        err = {
            "message": "Incorrect API key provided: sk-***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    elif status == 404:
        err = {
            "message": f"The model '{model}' does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    elif status == 429 and quota:
        err = {
            "message": "You exceeded your current quota, please check your plan and billing "
            "details.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    elif status == 429:
        err = {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    elif status >= 500:
        err = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    else:
        err = {
            "message": f"Emulated error {status}.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    return {"error": err}


class _Closed(Exception):
    """The socket is gone (client closed or a fault dropped it)."""


@dataclass
class ResponseRecord:
    """One assistant response, as the emulator generated it (for assertions)."""

    id: str
    item_id: str
    reply: str
    modalities: list[str]
    pcm: bytes = b""
    status: str = "in_progress"
    reason: str | None = None
    sent_text: str = ""
    sent_audio_bytes: int = 0
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audio_ms(self) -> float:
        """Milliseconds of audio generated (sent) so far."""
        return self.sent_audio_bytes / BYTES_PER_MS


class _Vad:
    """Energy-based server VAD over 10 ms frames of the received PCM16."""

    def __init__(self) -> None:
        self.speaking = False
        self.voiced_run = 0
        self.silent_run = 0
        self.onset_sample = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._consumed = 0  # absolute sample index of the start of _pending

    @property
    def position(self) -> int:
        """Absolute sample index the next fed sample will have."""
        return self._consumed + len(self._pending)

    def reset(self, at_sample: int) -> None:
        self.speaking = False
        self.voiced_run = 0
        self.silent_run = 0
        self._pending = np.zeros(0, dtype=np.int16)
        self._consumed = at_sample

    def feed(self, samples: np.ndarray, config: dict[str, Any]) -> list[tuple[str, int]]:
        """Returns ("start", onset_sample) / ("stop", end_sample) transitions."""
        threshold = vad_threshold_dbfs(float(config.get("threshold") or 0.5))
        silence_frames = max(int((config.get("silence_duration_ms") or 500) / 10), 1)
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        out: list[tuple[str, int]] = []
        n_frames = len(data) // VAD_FRAME
        frames = data[: n_frames * VAD_FRAME].astype(np.float64).reshape(n_frames, VAD_FRAME)
        power = np.mean((frames / 32768.0) ** 2, axis=1)  # mean square per 10 ms frame
        voiced_frames = power > 10.0 ** (threshold / 10.0)  # RMS dBFS > threshold
        for i in range(n_frames):
            voiced = bool(voiced_frames[i])
            frame_start = self._consumed + i * VAD_FRAME
            if not self.speaking:
                self.voiced_run = self.voiced_run + 1 if voiced else 0
                if self.voiced_run >= 2:  # 20 ms of energy: onset at the first voiced frame
                    self.speaking = True
                    self.silent_run = 0
                    self.onset_sample = frame_start - VAD_FRAME
                    out.append(("start", self.onset_sample))
            else:
                self.silent_run = 0 if voiced else self.silent_run + 1
                if self.silent_run >= silence_frames:
                    self.speaking = False
                    self.voiced_run = 0
                    out.append(("stop", frame_start + VAD_FRAME))
        self._pending = data[n_frames * VAD_FRAME :].copy()
        self._consumed += n_frames * VAD_FRAME
        return out


class RealtimeSession:
    """Server-side state of one Realtime WebSocket (a fresh session per socket)."""

    def __init__(self, emulator: OpenAIEmulator, ws: web.WebSocketResponse, model: str | None):
        self.emu = emulator
        self.ws = ws
        self.id = emulator.new_id("sess")
        self.conversation_id = emulator.new_id("conv")
        self.model = model or "gpt-realtime"
        self.query_model = model
        self.config: dict[str, Any] = emulator.initial_session_config(self.id, self.model)
        self.items: dict[str, dict[str, Any]] = {}  # conversation order (dicts keep it)
        self.user_transcripts: list[str] = []
        self.assistant_transcripts: list[str] = []
        self.responses: list[ResponseRecord] = []
        self.active: ResponseRecord | None = None
        self.audio_bytes_received = 0
        self.events_sent = 0
        self.closed = False
        self.close_code: int | None = None
        self.first_audio_sent = False
        # input buffer: bytes from absolute sample ``buf_start`` up to ``total_samples``
        self.buffer = bytearray()
        self.buf_start = 0
        self.total_samples = 0
        self.vad = _Vad()
        self.speech_item_id: str | None = None
        self.pending_turn: Turn | None = None
        # idle timeout (server_vad idle_timeout_ms): armed from this absolute sample on
        self.idle_from: int | None = 0
        # diarization labels: the service names speakers by capital letters in order of
        # appearance (types/audio/transcription_diarized_segment.py); stable per session
        self.speaker_labels: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- sending -------------------------------------------------------------------------
    async def send(
        self, event: dict[str, Any], *, skip_if: Callable[[], bool] | None = None
    ) -> bool:
        """Send one server event (``event_id`` added); False if skipped or closed."""
        async with self._lock:
            # slow loris: every frame waits (Faults.stall_s), in order, like B2's SSE stall
            await self.emu.pace(self.emu.faults.stall_s)
            if self.closed or self.ws.closed:
                return False
            if skip_if is not None and skip_if():
                return False
            frame = {"type": event["type"], "event_id": self.emu.new_event_id(), **event}
            text = json.dumps(frame)
            self.emu.check_server_frame(text)
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                self.closed = True
                raise _Closed from exc
            self.events_sent += 1
            self.emu.log_ws("ws_out", frame, self.id)
            await self._after_event()
        await asyncio.sleep(0)  # let the receive loop interleave (barge-in, cancel)
        return True

    async def _after_event(self) -> None:
        """One-shot fault knobs that fire after the N-th server event of this socket."""
        faults = self.emu.faults
        n = self.events_sent
        if faults.malformed_after_events is not None and n >= faults.malformed_after_events:
            faults.malformed_after_events = None
            await self._raw('{"type": "response.output_audio.delta", "event_id": ')
            self.emu.log.add(
                LogEntry(
                    time.monotonic(),
                    "ws_out",
                    WS_PATH,
                    event_type="<malformed>",
                    conversation_id=self.id,
                )
            )
        if faults.unknown_after_events is not None and n >= faults.unknown_after_events:
            faults.unknown_after_events = None
            frame = {
                "type": "emulator.unknown_future_event",
                "event_id": self.emu.new_event_id(),
                "detail": "an event type this SDK version does not know",
            }
            await self._raw(json.dumps(frame))  # deliberately not strict-checked
            self.emu.log_ws("ws_out", frame, self.id)
        if faults.drop_after_events is not None and n >= faults.drop_after_events:
            faults.drop_after_events = None
            await self.drop(faults.drop_close_code)

    async def _raw(self, text: str) -> None:
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            self.closed = True
            raise _Closed from exc

    async def drop(self, code: int) -> None:
        """Close abnormally. 1005/1006 cannot travel in a close frame: cut TCP instead."""
        self.closed = True
        self.close_code = code
        if code in (1005, 1006):
            transport = self.ws._req.transport if self.ws._req is not None else None
            if transport is not None:
                transport.abort()
        else:
            await self.ws.close(code=code, message=b"emulated connection drop")
        raise _Closed

    async def error(
        self,
        code: str,
        message: str,
        *,
        client_event_id: str | None = None,
        param: str | None = None,
        err_type: str = "invalid_request_error",
    ) -> None:
        """Send an ``error`` event (the session carries on)."""
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": err_type,
                    "code": code,
                    "message": message,
                    "param": param,
                    "event_id": client_event_id,
                },
            }
        )

    async def expire_after(self, seconds: float) -> None:
        """At the maximum session duration: ``error`` ``session_expired``, then close."""
        await asyncio.sleep(seconds)
        if self.closed:
            return
        with contextlib.suppress(_Closed):
            await self.error(
                "session_expired",
                f"Your session hit the maximum duration of {seconds / 60:g} minutes.",
            )
        self.closed = True
        self.close_code = self.emu.session_expiry_close_code
        with contextlib.suppress(Exception):
            await self.ws.close(code=self.close_code, message=b"session expired")

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run ``coro`` alongside the receive loop; a closed socket ends it quietly."""

        async def guarded() -> None:
            with contextlib.suppress(_Closed, ConnectionError):
                await coro

        task: asyncio.Task[None] = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: coro.close())  # cancelled before it ever ran
        return task

    async def shutdown(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, _Closed, ConnectionError):
                await task

    # -- dispatch ------------------------------------------------------------------------
    async def handle(self, text: str) -> None:
        """Handle one client text frame."""
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self.emu.log_ws("ws_in", {"type": "<invalid json>"}, self.id)
            await self.error("invalid_json", "The server could not parse the JSON frame.")
            return
        if not isinstance(event, dict):
            await self.error("invalid_value", "Client events must be JSON objects.")
            return
        etype = event.get("type")
        audio_bytes = 0
        if etype == "input_audio_buffer.append":
            b64 = str(event.get("audio") or "")
            audio_bytes = len(b64) * 3 // 4 - b64[-2:].count("=")  # decoded size, no decode
        self.emu.log_ws("ws_in", event, self.id, audio_bytes=audio_bytes)
        self.emu.check_client_frame(text)
        client_event_id = event.get("event_id")
        handler = self._handlers().get(str(etype))
        if handler is None:
            await self.error(
                "invalid_value",
                f"Invalid value: '{etype}'. Supported values are: "
                + ", ".join(f"'{name}'" for name in self._handlers()),
                client_event_id=client_event_id,
                param="type",
            )
            return
        try:
            await handler(event, client_event_id)
        except (_Closed, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # an emulator bug or input it does not model: say so
            self.emu.internal_errors.append(f"{etype}: {exc!r}")
            await self.error(
                "server_error",
                f"The server had an error while processing {etype}.",
                client_event_id=client_event_id,
                err_type="server_error",
            )

    def _handlers(self) -> dict[str, Callable[[dict[str, Any], str | None], Any]]:
        return {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.truncate": self.on_item_truncate,
            "conversation.item.delete": self.on_item_delete,
            "conversation.item.retrieve": self.on_item_retrieve,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "output_audio_buffer.clear": self.on_output_audio_buffer_clear,
        }

    # -- session -------------------------------------------------------------------------
    @property
    def turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.config["audio"]["input"].get("turn_detection")
        return td

    @property
    def transcription(self) -> dict[str, Any] | None:
        tr: dict[str, Any] | None = self.config["audio"]["input"].get("transcription")
        return tr

    async def on_session_update(self, event: dict[str, Any], ceid: str | None) -> None:
        session = event.get("session")
        if not isinstance(session, dict):
            await self.error(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                client_event_id=ceid,
                param="session",
            )
            return
        if session.get("type") not in ("realtime",):
            await self.error(
                "missing_required_parameter" if "type" not in session else "invalid_value",
                "Missing required parameter: 'session.type'."
                if "type" not in session
                else f"Invalid value: '{session.get('type')}'. Supported values are: 'realtime'.",
                client_event_id=ceid,
                param="session.type",
            )
            return
        new_voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
        problem = voice_problem(new_voice) if new_voice is not None else None
        if problem is not None:
            await self.error(
                "invalid_value", problem, client_event_id=ceid, param="session.audio.output.voice"
            )
            return
        if (
            new_voice is not None
            and self.first_audio_sent
            and new_voice != self.config["audio"]["output"].get("voice")
        ):
            await self.error(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                client_event_id=ceid,
                param="session.audio.output.voice",
            )
            return
        for side in ("input", "output"):
            fmt = ((session.get("audio") or {}).get(side) or {}).get("format")
            if (
                isinstance(fmt, dict)
                and fmt.get("type") == "audio/pcm"
                and fmt.get("rate", RATE) != RATE
            ):
                await self.error(
                    "invalid_value",
                    f"Invalid 'session.audio.{side}.format.rate': {fmt.get('rate')}. "
                    "Supported values are: 24000.",
                    client_event_id=ceid,
                    param=f"session.audio.{side}.format.rate",
                )
                return
        self.config = merge_session(self.config, session)
        await self.send({"type": "session.updated", "session": self.config})

    # -- input audio ---------------------------------------------------------------------
    async def on_append(self, event: dict[str, Any], ceid: str | None) -> None:
        try:
            raw = base64.b64decode(event.get("audio") or "", validate=True)
        except ValueError:
            await self.error(
                "invalid_value",
                "Invalid 'audio': not valid base64.",
                client_event_id=ceid,
                param="audio",
            )
            return
        if len(raw) % 2:
            raw = raw[:-1]
        self.audio_bytes_received += len(raw)
        self.buffer += raw
        start_sample = self.total_samples
        self.total_samples += len(raw) // 2
        td = self.turn_detection
        if td is None or td.get("type") not in ("server_vad", "semantic_vad"):
            return
        td = effective_vad(td)
        if self.vad.position != start_sample:  # VAD just switched on: start from here
            self.vad.reset(start_sample)
        samples = np.frombuffer(raw, dtype="<i2")
        for kind, at in self.vad.feed(samples, td):
            if kind == "start":
                await self._speech_started(at, td)
            else:
                await self._speech_stopped(at, td)
        if not self.vad.speaking:
            await self._check_idle(td)
            self._trim_buffer(int(td.get("prefix_padding_ms") or 0))

    async def _check_idle(self, td: dict[str, Any]) -> None:
        """``idle_timeout_ms``: no speech for that long after the last response's audio
        would have finished playing -> ``timeout_triggered``, an empty commit, a response."""
        idle_ms = td.get("idle_timeout_ms")
        if not idle_ms or self.idle_from is None or self.active is not None:
            return
        if (self.total_samples - self.idle_from) * 1000 < int(idle_ms) * RATE:
            return
        start_ms = self.idle_from * 1000 // RATE
        self.idle_from = None  # re-armed by the next response.done
        item_id = self.emu.new_id("item")
        await self.send(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": start_ms,
                "audio_end_ms": self.total_samples * 1000 // RATE,
                "item_id": item_id,
            }
        )
        audio = bytes(self.buffer)
        self.buffer.clear()
        self.buf_start = self.total_samples
        self.vad.reset(self.total_samples)
        await self._commit(audio, item_id, idle=True)
        await self._start_response({}, None)

    def _trim_buffer(self, keep_ms: int) -> None:
        """Outside speech, keep only the prefix padding (bounded memory in hands-free mode)."""
        keep = keep_ms * BYTES_PER_MS
        if len(self.buffer) > keep + BYTES_PER_MS * 1000:
            drop = len(self.buffer) - keep
            drop -= drop % 2
            del self.buffer[:drop]
            self.buf_start += drop // 2

    async def _speech_started(self, onset_sample: int, td: dict[str, Any]) -> None:
        prefix = int(td.get("prefix_padding_ms") or 0)
        start_ms = max(onset_sample * 1000 // RATE - prefix, 0)
        # drop audio from before the prefix so the committed item starts at audio_start_ms
        start_sample = max(start_ms * RATE // 1000, self.buf_start)
        cut = (start_sample - self.buf_start) * 2
        if cut > 0:
            del self.buffer[:cut]
            self.buf_start = start_sample
        self.speech_item_id = self.emu.new_id("item")
        self.idle_from = None
        active = self.active
        interrupt = bool(td.get("interrupt_response", True)) and active is not None
        if interrupt and active is not None:
            active.cancel_reason = "turn_detected"  # stop deltas before speech_started goes out
        await self.send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": start_ms,
                "item_id": self.speech_item_id,
            }
        )
        if interrupt and active is not None:
            await self._cancel(active, "turn_detected")

    async def _speech_stopped(self, end_sample: int, td: dict[str, Any]) -> None:
        item_id = self.speech_item_id or self.emu.new_id("item")
        self.speech_item_id = None
        await self.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": end_sample * 1000 // RATE,
                "item_id": item_id,
            }
        )
        upto = max((end_sample - self.buf_start) * 2, 0)
        audio = bytes(self.buffer[:upto])
        del self.buffer[:upto]
        self.buf_start = end_sample
        await self._commit(audio, item_id)
        if td.get("create_response", True) and self.active is None:
            await self._start_response({}, None)

    async def on_commit(self, event: dict[str, Any], ceid: str | None) -> None:
        ms = len(self.buffer) / BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            await self.error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                client_event_id=ceid,
            )
            return
        audio = bytes(self.buffer)
        self.buffer.clear()
        self.buf_start = self.total_samples
        item_id = self.speech_item_id or self.emu.new_id("item")
        self.speech_item_id = None
        self.vad.reset(self.total_samples)
        await self._commit(audio, item_id)

    async def on_clear(self, event: dict[str, Any], ceid: str | None) -> None:
        self.buffer.clear()
        self.buf_start = self.total_samples
        self.speech_item_id = None
        self.vad.reset(self.total_samples)
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _commit(self, audio: bytes, item_id: str, *, idle: bool = False) -> None:
        """Turn committed audio into a user item, then transcribe it if configured.

        Each user turn consumes the next scripted :class:`Turn` (its ``user_text`` is the
        transcript, its ``reply`` the next response); an idle-timeout commit holds silence,
        so it consumes nothing and is not transcribed."""
        turn = self.emu.script.next_turn() if not idle else None
        self.pending_turn = turn
        previous = self.last_item_id()
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "item_id": item_id,
                "previous_item_id": previous,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items[item_id] = item
        await self._item_added_done(item, previous)
        if self.transcription is not None and turn is not None:
            delay = self.emu.timing.first_transcript_delay_s
            coro = self._transcribe(
                item_id, turn, len(audio) / BYTES_PER_MS, dict(self.transcription)
            )
            if delay > 0:
                self.spawn(coro)  # runs alongside the response, as on the hosted service
            else:
                await coro  # deterministic order: transcription before the response

    def speaker_label(self, scripted: str) -> str:
        """``A``, ``B``, ... for the scripted speaker ids, in order of first appearance."""
        if scripted not in self.speaker_labels:
            n = len(self.speaker_labels)
            label = chr(ord("A") + n % 26) + (str(n // 26) if n >= 26 else "")
            self.speaker_labels[scripted] = label
        return self.speaker_labels[scripted]

    async def _item_added_done(self, item: dict[str, Any], previous: str | None) -> None:
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )

    def last_item_id(self) -> str | None:
        return next(reversed(self.items), None) if self.items else None

    async def _transcribe(
        self, item_id: str, turn: Turn, audio_ms: float, config: dict[str, Any]
    ) -> None:
        timing = self.emu.timing
        await self.emu.pace(timing.first_transcript_delay_s)
        if self.emu.fail_transcriptions > 0:
            self.emu.fail_transcriptions -= 1
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {
                        "type": "transcription_error",
                        "code": "audio_unintelligible",
                        "message": "Audio could not be transcribed",
                        "param": None,
                    },
                }
            )
            return
        model = str(config.get("model") or "gpt-4o-transcribe")
        text = turn.user_text
        if model == DIARIZE_MODEL:
            segments = turn.speaker_segments()
            total_chars = sum(max(len(t), 1) for _, t in segments)
            cursor = 0.0
            seconds = audio_ms / 1000.0
            for index, (speaker, seg_text) in enumerate(segments):
                span = seconds * max(len(seg_text), 1) / total_chars
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": seg_text if index == 0 else " " + seg_text,
                    }
                )
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.segment",
                        "id": f"seg_{index:04d}",
                        "item_id": item_id,
                        "content_index": 0,
                        "speaker": self.speaker_label(speaker),
                        "start": round(cursor, 3),
                        "end": round(cursor + span, 3),
                        "text": seg_text,
                    }
                )
                cursor += span
            text = " ".join(t for _, t in segments)
        else:
            for index, token in enumerate(word_tokens(text)):
                if index:
                    await self.emu.pace(timing.token_interval_s)
                await self.send(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": token,
                    }
                )
        usage: dict[str, Any]
        if model == "whisper-1":
            usage = {"type": "duration", "seconds": round(audio_ms / 1000.0, 3)}
        else:
            audio_tokens = max(int(audio_ms / 100), 1)
            out_tokens = max(len(text.split()), 1)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": out_tokens,
                "total_tokens": audio_tokens + out_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            }
        item = self.items.get(item_id)
        if item is not None:
            item["content"][0]["transcript"] = text
        self.user_transcripts.append(text)
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": usage,
            }
        )

    # -- conversation items ---------------------------------------------------------------
    async def on_item_create(self, event: dict[str, Any], ceid: str | None) -> None:
        item = event.get("item")
        if not isinstance(item, dict) or item.get("type") not in (
            "message",
            "function_call",
            "function_call_output",
        ):
            await self.error(
                "invalid_value",
                "Invalid 'item': unsupported item type.",
                client_event_id=ceid,
                param="item.type",
            )
            return
        if item["type"] == "message":
            role = item.get("role")
            allowed = {
                "user": {"input_text", "input_audio"},
                "system": {"input_text"},
                "assistant": {"output_text"},
            }.get(str(role))
            content = item.get("content")
            if (
                allowed is None
                or not isinstance(content, list)
                or not all(isinstance(c, dict) and c.get("type") in allowed for c in content)
            ):
                await self.error(
                    "invalid_value",
                    f"Invalid content for a {role} message item.",
                    client_event_id=ceid,
                    param="item.content",
                )
                return
        item_id = str(item.get("id") or self.emu.new_id("item"))
        if item_id in self.items:
            await self.error(
                "item_already_exists",
                f"Item with id '{item_id}' already exists.",
                client_event_id=ceid,
                param="item.id",
            )
            return
        wanted = event.get("previous_item_id")
        if wanted is not None and wanted != "root" and wanted not in self.items:
            await self.error(
                "invalid_value",
                f"Invalid 'previous_item_id': no item with id '{wanted}'.",
                client_event_id=ceid,
                param="previous_item_id",
            )
            return
        previous = None if wanted == "root" else (wanted or self.last_item_id())
        stored: dict[str, Any] = {"id": item_id, "object": "realtime.item", **item}
        stored["id"] = item_id
        stored["status"] = "completed"
        if stored["type"] == "message":
            stored["content"] = [dict(c) for c in stored["content"]]
            for part in stored["content"]:
                if part.get("type") == "input_audio" and "audio" in part:
                    part.pop("audio")  # the server keeps the audio, not the echo
                    part.setdefault("transcript", None)
        self._insert_after(previous, stored)
        await self._item_added_done(stored, previous)

    def _insert_after(self, previous: str | None, item: dict[str, Any]) -> None:
        """Place ``item`` right after ``previous`` (None: at the start of the conversation)."""
        if previous is not None and previous == self.last_item_id():
            self.items[item["id"]] = item
            return
        ordered = list(self.items.items())
        at = 0 if previous is None else [k for k, _ in ordered].index(previous) + 1
        ordered.insert(at, (item["id"], item))
        self.items = dict(ordered)

    async def on_item_truncate(self, event: dict[str, Any], ceid: str | None) -> None:
        item_id = event.get("item_id")
        item = self.items.get(str(item_id))
        record = next((r for r in self.responses if r.item_id == item_id), None)
        if item is None or item.get("role") != "assistant":
            await self.error(
                "invalid_value",
                f"Invalid 'item_id': no assistant message item with id '{item_id}'.",
                client_event_id=ceid,
                param="item_id",
            )
            return
        if event.get("content_index", 0) != 0:
            await self.error(
                "invalid_value",
                "Invalid 'content_index': must be 0.",
                client_event_id=ceid,
                param="content_index",
            )
            return
        end_ms = event.get("audio_end_ms")
        generated = record.audio_ms if record is not None else 0.0
        if not isinstance(end_ms, int) or end_ms < 0 or end_ms > generated:
            await self.error(
                "invalid_value",
                f"Audio content of {generated:.0f}ms is already shorter than {end_ms}ms",
                client_event_id=ceid,
                param="audio_end_ms",
            )
            return
        if record is not None:
            cut = truncated_text(record.reply, end_ms, record.sent_text)
            record.sent_text = cut
            for part in item.get("content", []):
                if "transcript" in part:
                    part["transcript"] = cut
            if self.assistant_transcripts:
                self.assistant_transcripts[self.responses.index(record)] = cut
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )

    async def on_item_delete(self, event: dict[str, Any], ceid: str | None) -> None:
        item_id = str(event.get("item_id"))
        if self.items.pop(item_id, None) is None:
            await self.error(
                "invalid_value",
                f"Invalid 'item_id': no item with id '{item_id}'.",
                client_event_id=ceid,
                param="item_id",
            )
            return
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def on_item_retrieve(self, event: dict[str, Any], ceid: str | None) -> None:
        item_id = str(event.get("item_id"))
        item = self.items.get(item_id)
        if item is None:
            await self.error(
                "invalid_value",
                f"Invalid 'item_id': no item with id '{item_id}'.",
                client_event_id=ceid,
                param="item_id",
            )
            return
        await self.send({"type": "conversation.item.retrieved", "item": item})

    async def on_output_audio_buffer_clear(self, event: dict[str, Any], ceid: str | None) -> None:
        await self.error(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            client_event_id=ceid,
            param="type",
        )

    # -- responses ----------------------------------------------------------------------
    async def on_response_create(self, event: dict[str, Any], ceid: str | None) -> None:
        if self.active is not None:
            await self.error(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a new one.",
                client_event_id=ceid,
            )
            return
        params = event.get("response") if isinstance(event.get("response"), dict) else {}
        await self._start_response(params or {}, ceid)

    async def on_response_cancel(self, event: dict[str, Any], ceid: str | None) -> None:
        active = self.active
        wanted = event.get("response_id")
        if active is None or (wanted and wanted != active.id):
            await self.error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                client_event_id=ceid,
            )
            return
        await self._cancel(active, "client_cancelled")

    async def _cancel(self, record: ResponseRecord, reason: str) -> None:
        record.cancel_reason = reason
        record.wake.set()
        if record.task is not None:
            with contextlib.suppress(asyncio.CancelledError, _Closed):
                await record.task

    async def _start_response(self, params: dict[str, Any], ceid: str | None) -> None:
        turn = self.pending_turn or self.emu.script.next_turn()
        self.pending_turn = None
        modalities = list(params.get("output_modalities") or self.config["output_modalities"])
        record = ResponseRecord(
            id=self.emu.new_id("resp"),
            item_id=self.emu.new_id("item"),
            reply=turn.reply,
            modalities=modalities,
        )
        if "audio" in modalities:
            record.pcm = pcm16_bytes(speech_like_pcm(turn.reply))
        self.active = record
        self.responses.append(record)
        self.assistant_transcripts.append("")
        record.task = self.spawn(self._run_response(record, params))

    def _response_body(self, record: ResponseRecord, params: dict[str, Any]) -> dict[str, Any]:
        out_cfg = self.config["audio"]["output"]
        voice = ((params.get("audio") or {}).get("output") or {}).get("voice") or out_cfg["voice"]
        return {
            "object": "realtime.response",
            "id": record.id,
            "status": record.status,
            "status_details": None,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": record.modalities,
            "max_output_tokens": params.get("max_output_tokens", self.config["max_output_tokens"]),
            "audio": {"output": {"format": out_cfg["format"], "voice": voice}},
            "usage": None,
            "metadata": params.get("metadata"),
        }

    def _assistant_item(
        self, record: ResponseRecord, status: str, with_content: bool
    ) -> dict[str, Any]:
        ctype = "output_audio" if "audio" in record.modalities else "output_text"
        key = "transcript" if ctype == "output_audio" else "text"
        return {
            "id": record.item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [{"type": ctype, key: record.sent_text}] if with_content else [],
        }

    async def _run_response(self, record: ResponseRecord, params: dict[str, Any]) -> None:
        try:
            await self._stream_response(record, params)
        except _Closed:
            pass
        finally:
            if self.active is record:
                self.active = None

    async def _stream_response(self, record: ResponseRecord, params: dict[str, Any]) -> None:
        timing = self.emu.timing
        body = self._response_body(record, params)
        previous = self.last_item_id()
        await self.send({"type": "response.created", "response": body})
        await self.send(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                    {"name": "tokens", "limit": 400000, "remaining": 398000, "reset_seconds": 0.3},
                ],
            }
        )
        if self.emu.fail_responses > 0:
            self.emu.fail_responses -= 1
            await self._fail_response(record, params)
            return
        item = self._assistant_item(record, "in_progress", with_content=False)
        self.items[record.item_id] = item
        common = {
            "response_id": record.id,
            "item_id": record.item_id,
            "output_index": 0,
            "content_index": 0,
        }
        await self.send(
            {
                "type": "response.output_item.added",
                "response_id": record.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        audio = "audio" in record.modalities
        part_type = "audio" if audio else "text"
        part_key = "transcript" if audio else "text"
        await self.send(
            {
                "type": "response.content_part.added",
                **common,
                "part": {"type": part_type, part_key: ""},
            }
        )

        # one merged schedule: transcript tokens and audio chunks, each on its own clock
        tokens = word_tokens(record.reply)
        step = max(int(RATE * timing.chunk_ms / 1000), 1) * 2
        chunks = [record.pcm[i : i + step] for i in range(0, len(record.pcm), step)]
        schedule: list[tuple[float, float, int, str]] = []
        for i, token in enumerate(tokens):
            due = timing.first_token_delay_s + i * timing.token_interval_s
            schedule.append((due, i / max(len(tokens), 1), 0, token))
        for j in range(len(chunks)):
            due = timing.first_audio_delay_s
            if timing.audio_pace > 0:
                due += j * (timing.chunk_ms / 1000.0) / timing.audio_pace
            schedule.append((due, j / max(len(chunks), 1), 1, str(j)))
        schedule.sort()
        started = time.monotonic()
        delta_type = (
            "response.output_audio_transcript.delta" if audio else "response.output_text.delta"
        )

        def cancelled() -> bool:
            return record.cancel_reason is not None

        limit = params.get("max_output_tokens", self.config.get("max_output_tokens"))
        budget = limit if isinstance(limit, int) else None
        chunk_tokens = max(math.ceil(timing.chunk_ms / 50), 1)  # ~20 audio tokens per second
        for due, _frac, kind, payload in schedule:
            wait = started + due - time.monotonic()
            if wait > 0 and not cancelled():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(record.wake.wait(), wait)
            if cancelled() or self.closed:
                break
            if budget is not None:
                budget -= 1 if kind == 0 else chunk_tokens
                if budget < 0:  # the output token cap ends the response early
                    record.cancel_reason = "max_output_tokens"
                    break
            if kind == 0:
                if await self.send(
                    {"type": delta_type, **common, "delta": payload}, skip_if=cancelled
                ):
                    record.sent_text += payload
                    self.assistant_transcripts[self.responses.index(record)] = record.sent_text
            else:
                chunk = chunks[int(payload)]
                if await self.send(
                    {
                        "type": "response.output_audio.delta",
                        **common,
                        "delta": base64.b64encode(chunk).decode("ascii"),
                    },
                    skip_if=cancelled,
                ):
                    record.sent_audio_bytes += len(chunk)
                    self.first_audio_sent = True
        await self._finish_response(record, params, common, previous)

    async def _finish_response(
        self,
        record: ResponseRecord,
        params: dict[str, Any],
        common: dict[str, Any],
        previous: str | None,
    ) -> None:
        """Close out every open part in order, then ``response.done``."""
        audio = "audio" in record.modalities
        reason = record.cancel_reason
        text = record.sent_text
        if audio:
            await self.send({"type": "response.output_audio.done", **common})
            await self.send(
                {"type": "response.output_audio_transcript.done", **common, "transcript": text}
            )
            part = {"type": "audio", "transcript": text}
        else:
            await self.send({"type": "response.output_text.done", **common, "text": text})
            part = {"type": "text", "text": text}
        await self.send({"type": "response.content_part.done", **common, "part": part})
        item_status = "incomplete" if reason else "completed"
        item = self._assistant_item(record, item_status, with_content=True)
        self.items[record.item_id] = item
        await self.send(
            {
                "type": "response.output_item.done",
                "response_id": record.id,
                "output_index": 0,
                "item": item,
            }
        )
        await self.send(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
        )
        status = RESPONSE_STATUS_FOR_REASON.get(reason, "completed") if reason else "completed"
        record.status = status
        record.reason = reason
        body = self._response_body(record, params)
        body["output"] = [item]
        if reason:
            body["status_details"] = {"type": status, "reason": reason}
        body["usage"] = self._usage(record)
        self.active = None  # a new response may start as soon as done is out
        # idle timeout counts from when the reply would have finished playing
        self.idle_from = self.total_samples + int(record.sent_audio_bytes // 2)
        await self.send({"type": "response.done", "response": body})

    async def _fail_response(self, record: ResponseRecord, params: dict[str, Any]) -> None:
        """A server-side failure: no output, ``response.done`` with status ``failed``."""
        record.status = "failed"
        record.reason = "server_error"
        body = self._response_body(record, params)
        body["status_details"] = {
            "type": "failed",
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": "The server had an error while processing your request.",
            },
        }
        body["usage"] = self._usage(record)
        self.active = None
        await self.send({"type": "response.done", "response": body})

    def _usage(self, record: ResponseRecord) -> dict[str, Any]:
        text_in = sum(
            len(str(p.get("text") or p.get("transcript") or "").split())
            for it in self.items.values()
            for p in it.get("content", [])
            if isinstance(p, dict)
        ) + len(str(self.config.get("instructions") or "").split())
        audio_in = self.audio_bytes_received // (BYTES_PER_MS * 100)  # ~10 tokens/s
        text_out = max(len(record.sent_text.split()), 0)
        audio_out = math.ceil(record.audio_ms / 50) if record.sent_audio_bytes else 0
        input_tokens = text_in + audio_in
        output_tokens = text_out + audio_out
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }


def truncated_text(reply: str, end_ms: int, sent: str) -> str:
    """The transcript the user actually heard: words whose audio started before ``end_ms``."""
    ends = word_end_ms(reply)
    words = reply.split()
    starts = [0.0, *ends[:-1]]
    kept = [w for w, s in zip(words, starts, strict=True) if s < end_ms]
    heard = " ".join(kept)
    return heard if len(heard) <= len(sent.rstrip()) else sent.rstrip()


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Partial update: top-level fields replace; ``audio.input``/``audio.output`` merge one
    level deep, and every field below (``turn_detection``, ``transcription``, ``format``...)
    is replaced wholesale, so stale ``server_vad`` keys never leak into ``semantic_vad``."""
    merged: dict[str, Any] = json.loads(json.dumps(current))
    for key, value in update.items():
        if key in ("type", "model", "id", "object", "expires_at"):
            continue  # fixed for the session's lifetime
        if key == "audio" and isinstance(value, dict):
            for side in ("input", "output"):
                if isinstance(value.get(side), dict):
                    merged["audio"][side].update(value[side])
        else:
            merged[key] = value
    td = merged["audio"]["input"].get("turn_detection")
    if isinstance(td, dict) and td.get("type") == "server_vad":
        merged["audio"]["input"]["turn_detection"] = {**default_turn_detection(), **td}
    elif isinstance(td, dict) and td.get("type") == "semantic_vad":
        merged["audio"]["input"]["turn_detection"] = {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
            **td,
        }
    return merged


class _LogWaiter:
    """Counts matching log entries, scanning only what arrived since the last poll."""

    def __init__(self, emu: OpenAIEmulator, kind: str, event_type: str | None, count: int):
        self.log = emu.log
        self.kind, self.event_type, self.count = kind, event_type, count
        self.seen = 0
        self.hits: list[LogEntry] = []

    def poll(self) -> LogEntry | None:
        if self.log.size() < self.seen:  # the log was cleared: start over
            self.seen, self.hits = 0, []
        fresh = self.log.since(self.seen)
        self.seen += len(fresh)
        self.hits += [
            e
            for e in fresh
            if e.kind == self.kind and (self.event_type is None or e.event_type == self.event_type)
        ]
        return self.hits[self.count - 1] if len(self.hits) >= self.count else None


class OpenAIEmulator(EmulatorServer):
    """The OpenAI Realtime + models API on 127.0.0.1 for the real ``openai`` SDK.

    Knobs beyond :class:`.common.Faults`: ``accepted_keys`` (None = any non-empty bearer),
    ``insufficient_quota`` (429 bodies say so and carry ``x-should-retry: false``),
    ``ws_reject_mode`` (``"http"``: plain HTTP status before the upgrade, or
    ``"error_close"``: accept, send an ``error`` event, close with 1008), ``strict``.
    """

    def __init__(self, *, port: int = 0, strict: bool = True) -> None:
        super().__init__(port=port)
        self.strict = strict
        self.violations: list[Violation] = []
        self.client_violations: list[Violation] = []
        self.internal_errors: list[str] = []  # handler crashes (answered with server_error)
        # scripted server-side failures, counted down as they fire
        self.fail_transcriptions = 0  # -> ...input_audio_transcription.failed
        self.fail_responses = 0  # -> response.done status "failed" (server_error)
        self.sessions: list[RealtimeSession] = []
        self.accepted_keys: set[str] | None = None
        self.insufficient_quota = False
        self.ws_reject_mode = "http"
        self.check_models = True  # refuse unknown / shut-down models like the service
        self.initial_turn_detection: dict[str, Any] | None = default_turn_detection()
        self.instructions = "You are a helpful assistant."
        self.voice = "marin"
        # the service ends a Realtime socket after 60 min [X]; tests shorten it
        self.session_max_s: float = 3600.0
        self.clock_skew_s = 0.0  # the server's wall clock runs this far ahead of the real one
        self.session_expiry_close_code = 1000
        self._counter = itertools.count(1)
        self._event_counter = itertools.count(1)
        self._salt = uuid.uuid4().hex[:6]

    async def rotate_keys(self, *keys: str, drop_code: int | None = 1011) -> None:
        """A key rotation at the provider: accept only ``keys`` from now on and, unless
        ``drop_code`` is None, close every open socket with it (the service drops the
        sessions of a revoked key; the client reconnects and must present a new one)."""
        self.accepted_keys = set(keys)
        if drop_code is None:
            return
        for session in list(self.sessions):
            if not session.ws.closed:
                session.closed = True
                session.close_code = drop_code
                with contextlib.suppress(Exception):
                    await session.ws.close(code=drop_code, message=b"API key revoked")

    async def stop(self) -> None:
        """Close open sockets (1001 going away) first, so shutdown never waits on a client."""
        for session in list(self.sessions):
            if not session.ws.closed:
                session.closed = True
                with contextlib.suppress(Exception):
                    await session.ws.close(code=1001, message=b"emulator stopping")
        await super().stop()

    # -- ids and logging ------------------------------------------------------------------
    def server_time(self) -> float:
        """The server's wall clock (skewed by ``clock_skew_s``)."""
        return time.time() + self.clock_skew_s

    def new_id(self, prefix: str) -> str:
        """A unique id shaped like the service's (``item_...``, ``resp_...``)."""
        return f"{prefix}_{self._salt}{next(self._counter):06d}"

    def new_event_id(self) -> str:
        return f"event_{self._salt}{next(self._event_counter):07d}"

    def log_ws(
        self, kind: str, event: dict[str, Any], session_id: str, *, audio_bytes: int = 0
    ) -> None:
        """Record a frame; audio payloads are replaced by their decoded size."""
        body = dict(event)
        etype = str(body.get("type", ""))
        if etype == "input_audio_buffer.append":
            body["audio"] = f"<{audio_bytes} bytes>"
        elif etype == "response.output_audio.delta":
            audio_bytes = len(str(body.get("delta", ""))) * 3 // 4
            body["delta"] = f"<{audio_bytes} bytes>"
        self.log.add(
            LogEntry(
                at=time.monotonic(),
                kind=kind,
                path=WS_PATH,
                event_type=etype,
                conversation_id=session_id,
                audio_bytes=audio_bytes,
                body=body,
            )
        )

    def check_server_frame(self, text: str) -> None:
        if not self.strict:
            return
        from voicetui.testing.emulators.strict_openai import validate_server_event

        etype, problems = validate_server_event(text)
        self.violations += [Violation("server", etype, p, shorten(text)) for p in problems]

    def check_client_frame(self, text: str) -> None:
        if not self.strict:
            return
        from voicetui.testing.emulators.strict_openai import validate_client_event

        etype, problems = validate_client_event(text)
        self.client_violations += [Violation("client", etype, p, shorten(text)) for p in problems]

    async def wait_for(
        self,
        kind: str,
        event_type: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the team's agreed call shape
        count: int = 1,
    ) -> LogEntry:
        """Wait until ``count`` log entries of ``kind`` (and ``event_type``, if given) exist;
        returns the ``count``-th. Polls the thread-safe log incrementally, so it works whether
        the emulator runs in this loop or in a thread, and stays cheap on long logs."""
        waiter = _LogWaiter(self, kind, event_type, count)
        deadline = time.monotonic() + timeout
        while (hit := waiter.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} {event_type!r} (x{count}) within {timeout}s")
            await asyncio.sleep(0.005)
        return hit

    def wait_for_sync(
        self, kind: str, event_type: str | None = None, *, timeout: float = 5.0, count: int = 1
    ) -> LogEntry:
        """Blocking :meth:`wait_for` for synchronous tests (emulator in a thread)."""
        waiter = _LogWaiter(self, kind, event_type, count)
        deadline = time.monotonic() + timeout
        while (hit := waiter.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} {event_type!r} (x{count}) within {timeout}s")
            time.sleep(0.005)
        return hit

    def initial_session_config(self, session_id: str, model: str) -> dict[str, Any]:
        """What ``session.created`` reports (response layout, wire reference §3.3)."""
        fmt = {"type": "audio/pcm", "rate": RATE}
        td = self.initial_turn_detection
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "expires_at": int(self.server_time() + self.session_max_s),
            "audio": {
                "input": {
                    "format": dict(fmt),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": dict(td) if td is not None else None,
                },
                "output": {"format": dict(fmt), "voice": self.voice, "speed": 1.0},
            },
        }

    # -- HTTP ---------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model_id}", self._model)
        app.router.add_post("/v1/realtime/client_secrets", self._client_secrets)
        app.router.add_get(WS_PATH, self._realtime)
        return app

    def _key_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if not key:
            return False
        return self.accepted_keys is None or key in self.accepted_keys

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        base = {
            "x-request-id": f"req_{uuid.uuid4().hex[:24]}",
            "openai-processing-ms": "3",
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-limit-tokens": "400000",
            "x-ratelimit-remaining-tokens": "398000",
            "x-ratelimit-reset-tokens": "300ms",
        }
        base.update(headers or {})
        return web.json_response(body, status=status, headers=base)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        is_ws = (
            request.path == WS_PATH and request.headers.get("Upgrade", "").lower() == "websocket"
        )
        if is_ws:
            response: web.StreamResponse = await handler(request)
            return response
        body: dict[str, Any] | None = None
        if request.can_read_body:
            try:
                parsed = await request.json()
                body = parsed if isinstance(parsed, dict) else {"_": parsed}
            except (json.JSONDecodeError, ValueError):
                body = None
        await self.pace(self.faults.stall_s)
        forced = self.faults.take_http_status()
        if forced is not None:
            headers: dict[str, str] = {}
            if forced == 429:
                wait = self.faults.retry_after_s
                if wait is not None:
                    headers["retry-after-ms"] = str(int(wait * 1000))
                    headers["retry-after"] = str(max(math.ceil(wait), 1))
                if self.insufficient_quota:
                    headers["x-should-retry"] = "false"
            response = self._json(
                forced, error_body(forced, quota=self.insufficient_quota), headers
            )
        elif not self._key_ok(request):
            response = self._json(401, error_body(401))
        else:
            try:
                response = await handler(request)
            except web.HTTPNotFound:
                response = self._json(404, error_body(404, url=f"{request.method} {request.path}"))
            except web.HTTPMethodNotAllowed:
                response = self._json(405, error_body(405, url=f"{request.method} {request.path}"))
        self.log.add(
            LogEntry(
                at=time.monotonic(),
                kind="http",
                path=request.path,
                method=request.method,
                status=response.status,
                body=body,
            )
        )
        return response

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": m["id"],
                "object": "model",
                "created": m["created"],
                "owned_by": "system",
                "shutdown_date": m["shutdown_date"],
            }
            for m in MODELS
        ]
        return self._json(200, {"object": "list", "data": data})

    async def _model(self, request: web.Request) -> web.Response:
        model_id = request.match_info["model_id"]
        for m in MODELS:
            if m["id"] == model_id:
                return self._json(
                    200,
                    {
                        "id": m["id"],
                        "object": "model",
                        "created": m["created"],
                        "owned_by": "system",
                        "shutdown_date": m["shutdown_date"],
                    },
                )
        return self._json(404, error_body(404, model=model_id))

    async def _client_secrets(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            body = {}
        seconds = int(((body.get("expires_after") or {}).get("seconds")) or 600)
        session = self.initial_session_config(self.new_id("sess"), "gpt-realtime")
        requested = body.get("session") if isinstance(body.get("session"), dict) else {}
        session = merge_session(session, requested or {})
        if isinstance((requested or {}).get("model"), str):
            session["model"] = requested["model"]
        expires = int(self.server_time()) + seconds
        return self._json(
            200, {"value": f"ek_{uuid.uuid4().hex}", "expires_at": expires, "session": session}
        )

    # -- WebSocket ----------------------------------------------------------------------
    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        model = request.query.get("model")
        rejected = self.faults.take_ws_reject()
        if rejected is None and not self._key_ok(request):
            rejected = 401
        self.log.add(
            LogEntry(
                at=time.monotonic(),
                kind="ws_open",
                path=WS_PATH,
                method="GET",
                status=rejected if (rejected and self.ws_reject_mode == "http") else 101,
                body={"query": dict(request.query)},
            )
        )
        if rejected is not None and self.ws_reject_mode == "http":
            return self._json(rejected, error_body(rejected))
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, autoping=True)
        ws.headers["Date"] = email.utils.formatdate(self.server_time(), usegmt=True)
        await ws.prepare(request)
        session = RealtimeSession(self, ws, model)
        self.sessions.append(session)
        try:
            if rejected is not None:
                await session.error("invalid_api_key", error_body(401)["error"]["message"])
                session.closed = True
                session.close_code = 1008
                await ws.close(code=1008, message=b"invalid_api_key")
                return ws
            if self.check_models and model is not None and not known_model(model):
                # an unknown or shut-down model: an error event naming it, then close 4000
                # "invalid_request_error.<code>" (livekit/agents-js#1756 shows that close;
                # openai-realtime-console#561 the message)
                await session.error(
                    "model_not_found",
                    f"The model `{model}` does not exist or you do not have access to it.",
                    param="model",
                )
                session.closed = True
                session.close_code = 4000
                await ws.close(code=4000, message=b"invalid_request_error.model_not_found")
                return ws
            await session.send({"type": "session.created", "session": session.config})
            session.spawn(session.expire_after(self.session_max_s))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await session.handle(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await session.error("invalid_value", "Binary frames are not supported.")
                else:
                    break
        except _Closed:
            pass
        except (ConnectionError, asyncio.CancelledError):
            session.closed = True
        finally:
            await session.shutdown()
            if session.close_code is None:
                session.close_code = ws.close_code
            self.log.add(
                LogEntry(
                    at=time.monotonic(),
                    kind="ws_close",
                    path=WS_PATH,
                    status=session.close_code or 0,
                    conversation_id=session.id,
                )
            )
        return ws


def main(argv: list[str] | None = None) -> int:
    """``python -m voicetui.testing.emulators.openai --port N``: serve until Ctrl+C."""
    parser = argparse.ArgumentParser(prog="python -m voicetui.testing.emulators.openai")
    add_common_arguments(parser)
    parser.add_argument(
        "--session-max", type=float, default=3600.0, help="seconds until session_expired"
    )
    parser.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        help="seconds the server's wall clock runs ahead (negative: behind)",
    )
    args = parser.parse_args(argv)

    emu = OpenAIEmulator(port=args.port, strict=args.strict)
    emu.session_max_s = args.session_max
    emu.clock_skew_s = args.clock_skew
    apply_common_arguments(emu, args)
    return serve_forever(
        emu,
        lambda: f"OpenAI emulator listening on {emu.base_url} (SDK base_url {emu.base_url}/v1)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
