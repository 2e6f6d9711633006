"""Loopback emulator of the Mistral API as the ``mistralai`` 3.7.0 SDK speaks it.

One aiohttp server (REST, SSE and both realtime WebSockets on one port); point the SDK at it
with ``Mistral(api_key="test", server_url=emu.base_url)``. Wire details follow
``shared/reference/mistral-wire.md``: stream and non-stream share a path and branch on the body's
``stream`` flag; non-stream answers are ``application/json``; SSE frames carry both ``event:``
and ``data:`` (with ``type``) and never ``[DONE]``; WebSockets speak first with a fully valid
``session.created``.

Scripting
---------
``emu.script.turns`` is a list of :class:`~voicetui.testing.emulators.common.Turn`. The emulator
keeps **one cursor per endpoint** through that list (the shared ``Script._next`` is not used):

* ``"realtime"``: the n-th utterance on the realtime transcription sockets yields turn n's
  ``user_text``;
* ``"transcribe"``: the n-th ``POST /v1/audio/transcriptions`` yields turn n's ``segments``
  (diarized, spread over the speech found in the uploaded audio);
* ``"conversation"``: the n-th conversation request (start or append) yields turn n's ``reply``,
  preceded by ``tool.execution.*`` when ``Turn.tool`` is set.

After the last turn the last one repeats. Assigning a new ``Script`` resets the cursors;
:meth:`MistralEmulator.reset_cursors` does it explicitly. Speech (REST and realtime) has no
cursor: its audio is ``speech_like_pcm(input text)``, float32 LE mono 24 kHz, so its length
follows the text.

Timing (``emu.timing``): ``first_transcript_delay_s`` before a transcription answer / the first
realtime delta of an utterance; ``first_token_delay_s`` before the first agent token and
``token_interval_s`` between words; ``first_audio_delay_s`` before the first TTS audio (per REST
request, per realtime speech socket); ``audio_pace`` and ``chunk_ms`` for TTS audio.
``emu.tool_delay_s`` is how long a scripted web search "runs".

Keys: ``emu.accepted_keys`` (None, the default: any bearer) limits the ``Authorization:
Bearer`` keys the REST calls and WebSocket handshakes accept; any other gets HTTP 401
``{"detail": "Unauthorized"}`` like the service. ``await emu.rotate_keys(key)`` switches it at
runtime and drops the open sockets, as revoking the old key would.

Faults (``emu.faults``) apply to paths under ``emu.fault_scope`` (all paths when None):
forced HTTP status for the next N REST calls (429 with ``retry-after`` and ``retry-after-ms``),
WebSocket upgrade rejected, a stream dropped after N server events (WebSocket: close with
``drop_close_code``; SSE: the body is cut without its last chunk), one malformed frame or one
unknown event type after N events, and a stall before every answer / between frames. Drop,
malformed and unknown are one-shot; with several streams open at once, set ``fault_scope`` to
aim them. ``emu.conversation_error = "message"`` makes the next conversation stream report an
in-band ``conversation.response.error`` (one-shot).

Every request and every frame both ways lands in ``emu.log`` (kinds ``http``, ``http_end``,
``sse_out``, ``sse_drop``, ``sse_malformed``, ``sse_unknown``, ``ws_open``, ``ws_reject``,
``ws_in``, ``ws_out``, ``ws_drop``, ``ws_malformed``, ``ws_unknown``, ``ws_close``) with
``time.monotonic()`` stamps, event types, conversation ids and audio bytes received — never a
header value. ``await emu.wait_for(kind, what)`` waits for one.

With ``emu.enable_strict()`` every event and body sent is validated strictly into the SDK's
typed model for its type (see :mod:`voicetui.testing.emulators.strict_mistral`).

CLI: ``python -m voicetui.testing.emulators.mistral --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import math
import sys
import time
import wave
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from voicetui.providers.catalog import ModelInfo, ProviderCatalog, catalog_for
from voicetui.testing.emulators.cli import (
    add_common_arguments,
    apply_common_arguments,
    serve_forever,
)
from voicetui.testing.emulators.common import (
    RATE,
    EmulatorServer,
    LogEntry,
    Script,
    Turn,
    paced_chunks,
    speech_like_pcm,
)
from voicetui.testing.emulators.mistral_stream import (
    ARRIVED_AT,
    SSEOutlet,
    StreamDropped,
    dbfs,
    f32_b64,
    loggable,
    new_id,
    now_iso,
    word_pieces,
)

if TYPE_CHECKING:
    from voicetui.testing.emulators.strict_mistral import StrictChecker

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONVERSATION_ID = web.RequestKey("conversation_id", str)

LLM_MODEL = "mistral-small-latest"
TRANSCRIBE_MODEL = "voxtral-mini-latest"
REALTIME_MODEL = "voxtral-mini-transcribe-realtime-3"  # server turn detection
REALTIME_MODEL_NO_TURNS = "voxtral-mini-transcribe-realtime-2602"
MODERATION_MODEL = "mistral-moderation-2603"
TTS_MODEL = "voxtral-mini-tts-latest"

# (id, name, languages, gender, tags)
_PRESETS: list[tuple[str, str, list[str], str, list[str]]] = [
    ("gb_jane_neutral", "Jane (neutral)", ["en"], "female", ["neutral"]),
    ("gb_oliver_excited", "Oliver (excited)", ["en"], "male", ["excited"]),
    ("en_paul_neutral", "Paul (neutral)", ["en"], "male", ["neutral"]),
    ("en_amy_calm", "Amy (calm)", ["en"], "female", ["calm"]),
    ("fr_marie_neutral", "Marie (neutral)", ["fr", "en"], "female", ["neutral"]),
    ("fr_louis_cheerful", "Louis (cheerful)", ["fr"], "male", ["cheerful"]),
    ("de_lena_neutral", "Lena (neutral)", ["de", "en"], "female", ["neutral"]),
]


def _catalog() -> ProviderCatalog:
    catalog = catalog_for("ai-voice-conv.mistral")
    assert catalog is not None
    return catalog


def _all_presets() -> list[tuple[str, str, list[str], str, list[str]]]:
    """The emulator's own presets, then the catalogue's documented ones it lacks."""
    known = {p[0] for p in _PRESETS}
    documented = [
        (v.id, v.name, [v.language.split("-")[0]] if v.language else [], "female", ["preset"])
        for v in _catalog().voices
        if v.id not in known
    ]
    return [*_PRESETS, *documented]


def preset_voices() -> list[dict[str, Any]]:
    """The preset voices as ``VoiceResponse`` JSON objects."""
    return [
        {
            "id": vid,
            "name": name,
            "created_at": "2025-06-01T00:00:00Z",
            "user_id": None,
            "type": "preset",
            "slug": vid,
            "languages": langs,
            "gender": gender,
            "age": 30 + i,
            "tags": tags,
            "color": "#ff8800",
            "description": f"{name}, a preset voice",
            "retention_notice": 30,
            "trimmed_seconds": None,
            "kind": "pvc",
        }
        for i, (vid, name, langs, gender, tags) in enumerate(_all_presets())
    ]


def _model_card(mid: str, caps: dict[str, bool], **extra: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "object": "model",
        "created": 1_750_000_000,
        "owned_by": "mistralai",
        "type": "base",
        "capabilities": caps,
        "max_context_length": 32768,
        **({"aliases": []} | extra),
    }


def model_list() -> dict[str, Any]:
    """``GET /v1/models`` body: the catalogue's models that still work, with the capability
    flags the SDK's ``ModelCapabilities`` / ``AudioTranscriptionCapabilities`` carry
    (``turn_detection`` only where the model has it)."""
    data: list[dict[str, Any]] = []
    for m in _catalog().models:
        if m.status_on() == "retired":
            continue
        extra: dict[str, Any] = {"aliases": list(m.aliases)}
        if m.role == "agent":
            flags = {"completion_chat": True, "function_calling": True}
        elif m.role == "stt" and m.has("streaming"):
            flags = {"audio": True, "audio_transcription": True}
            flags["audio_transcription_realtime"] = True
            extra["audio_transcription_capabilities"] = {
                "modes": ["realtime"],
                "turn_detection": m.has("turn_detection"),
                "diarization": m.has("diarization"),
            }
        elif m.role == "stt":
            flags = {"audio": True, "audio_transcription": True}
            extra["audio_transcription_capabilities"] = {
                "modes": ["offline"],
                "diarization": m.has("diarization"),
                "timestamp_granularities": ["segment"],
            }
        else:
            flags = {"audio": True, "audio_speech": True}
            extra["audio_speech_capabilities"] = {
                "modes": ["streaming"],
                "response_formats": ["pcm"],
            }
        data.append(_model_card(m.id, flags, **extra))
    data.append(_model_card(MODERATION_MODEL, {"moderation": True}))
    return {"object": "list", "data": data}


def wav_bytes(pcm: np.ndarray, rate: int = RATE) -> bytes:
    """16-bit mono WAV of float32 samples."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[np.ndarray, int] | None:
    """Mono float32 samples and rate of a PCM WAV, or None when it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return None
    if width == 2:
        pcm = np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        pcm = np.frombuffer(frames, "<i4").astype(np.float32) / 2147483648.0
    elif width == 1:
        pcm = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        return None
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    return pcm, rate


def speech_span(pcm: np.ndarray, rate: int, threshold_dbfs: float) -> tuple[float, float]:
    """First and last instant (s) of 20 ms windows louder than ``threshold_dbfs``."""
    step = max(rate // 50, 1)
    loud = [i for i in range(0, len(pcm), step) if dbfs(pcm[i : i + step]) > threshold_dbfs]
    if not loud:
        return 0.0, len(pcm) / rate
    return loud[0] / rate, min(loud[-1] + step, len(pcm)) / rate


def spread_segments(
    segments: list[tuple[str, str]], start: float, end: float
) -> list[tuple[str, str, float, float]]:
    """Spread scripted (speaker, text) segments over [start, end] by text length."""
    total = sum(max(len(text), 1) for _, text in segments) or 1
    gap = min(0.1, (end - start) * 0.05)
    usable = max(end - start - gap * (len(segments) - 1), 0.0)
    out: list[tuple[str, str, float, float]] = []
    t = start
    for speaker, text in segments:
        dur = usable * max(len(text), 1) / total
        out.append((speaker, text, round(t, 3), round(t + dur, 3)))
        t += dur + gap
    return out


def _status_body(status: int) -> dict[str, Any]:
    if status == 401:
        return {"detail": "Unauthorized"}
    if status == 429:
        return {
            "object": "error",
            "message": "Requests rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "429",
        }
    return {"object": "error", "message": f"emulated status {status}", "type": "api_error"}


class MistralEmulator(EmulatorServer):
    """The Mistral REST/SSE/WebSocket emulator (see the module docstring)."""

    def __init__(self, *, port: int = 0, strict: bool = False) -> None:
        super().__init__(port=port)
        self.agents: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.voices: list[dict[str, Any]] = preset_voices()
        self.fault_scope: str | None = None
        self.tool_delay_s = 0.0
        self.speech_threshold_dbfs = -45.0  # energy above which received audio counts as speech
        self.sse_malformed_json = False  # malformed SSE frame: invalid JSON instead of bad schema
        # one-shot: the next conversation stream reports this failure in-band
        # (conversation.response.error) right after conversation.response.started
        self.conversation_error: str | None = None
        self.strict: StrictChecker | None = None
        self.accepted_keys: set[str] | None = None  # None: any bearer will do
        self.open_sockets: set[web.WebSocketResponse] = set()  # realtime sockets now open
        self._cursors: dict[str, int] = {}
        self._cursor_script: Script | None = None
        if strict:
            self.enable_strict()

    # -- scripting ---------------------------------------------------------------------------

    def next_turn(self, endpoint: str) -> Turn:
        """The scripted turn for the next use of ``endpoint`` (per-endpoint cursor)."""
        if self._cursor_script is not self.script:
            self._cursor_script = self.script
            self._cursors.clear()
        turns = self.script.turns or [Turn()]
        index = self._cursors.get(endpoint, 0)
        self._cursors[endpoint] = index + 1
        return turns[min(index, len(turns) - 1)]

    def key_ok(self, request: web.Request) -> bool:
        """Whether the request's bearer key is accepted (see ``accepted_keys``)."""
        if self.accepted_keys is None:
            return True
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        return bool(key) and key in self.accepted_keys

    async def rotate_keys(self, *keys: str, drop_code: int | None = 1011) -> None:
        """A key rotation at the provider: accept only ``keys`` from now on and, unless
        ``drop_code`` is None, close every open realtime socket with it (the service drops
        the sessions of a revoked key; the client reconnects and must present a new one)."""
        self.accepted_keys = set(keys)
        if drop_code is None:
            return
        for ws in list(self.open_sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=drop_code, message=b"API key revoked")

    def reset_cursors(self) -> None:
        """Start every endpoint's cursor at the first turn again."""
        self._cursors.clear()

    def forget_agents(self) -> None:
        """Drop every stored agent (as if they were deleted server-side)."""
        self.agents.clear()

    def known_voice(self, voice: str | None) -> str | None:
        """The canonical id of ``voice`` if the emulator knows it (a null voice is not one)."""
        if voice is None:
            return None
        return voice if any(v["id"] == voice for v in self.voices) else None

    def model_info(self, model: str | None) -> ModelInfo | None:
        """The catalogue entry of ``model`` if the account can use it (not shut down)."""
        info = _catalog().find(model or "")
        return info if info is not None and info.status_on() != "retired" else None

    def model_error(self, request: web.Request, model: str, body: Any = None) -> web.Response:
        """Mistral's answer to an unknown model: HTTP 400 with an ``invalid_model`` body
        (the shape quoted in mistralai/mistral-vibe#617)."""
        self._log_http(request, 400, body=body)
        payload = {
            "object": "error",
            "message": f"Invalid model: {model}",
            "type": "invalid_model",
            "param": None,
            "code": "1500",
        }
        return web.json_response(payload, status=400)

    def enable_strict(self) -> StrictChecker:
        """Validate everything sent from now on against the SDK's models."""
        from voicetui.testing.emulators.strict_mistral import StrictChecker

        if self.strict is None:
            self.strict = StrictChecker()
        return self.strict

    @property
    def violations(self) -> list[str]:
        """Strict-check violations so far (empty when strict checking is off)."""
        return list(self.strict.violations) if self.strict is not None else []

    def fault_in_scope(self, path: str) -> bool:
        """Whether fault knobs apply to ``path``."""
        return self.fault_scope is None or path.startswith(self.fault_scope)

    async def wait_for(
        self,
        kind: str,
        what: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a plain polling deadline, not cancellation
        count: int = 1,
    ) -> LogEntry:
        """Wait until the log holds ``count`` entries of ``kind`` whose event type equals
        ``what`` or whose path starts with it; return the ``count``-th one."""
        deadline = time.monotonic() + timeout
        while (hit := self._find(kind, what, count)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} {what or ''} x{count} within {timeout} s")
            await asyncio.sleep(0.005)
        return hit

    def wait_for_sync(
        self, kind: str, what: str | None = None, timeout: float = 5.0, count: int = 1
    ) -> LogEntry:
        """:meth:`wait_for` for synchronous callers (e.g. with ``start_in_thread``)."""
        deadline = time.monotonic() + timeout
        while (hit := self._find(kind, what, count)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} {what or ''} x{count} within {timeout} s")
            time.sleep(0.005)
        return hit

    def _find(self, kind: str, what: str | None, count: int) -> LogEntry | None:
        hits = [
            e
            for e in self.log.entries
            if e.kind == kind and (what is None or e.event_type == what or e.path.startswith(what))
        ]
        return hits[count - 1] if len(hits) >= count else None

    # -- app ---------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        from voicetui.testing.emulators import mistral_realtime

        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/v1/models", self._models)
        r.add_post("/v1/audio/transcriptions", self._transcriptions)
        r.add_get("/v1/audio/transcriptions/realtime", mistral_realtime.transcription_socket(self))
        r.add_post("/v1/audio/speech", self._speech)
        r.add_get("/v1/audio/speech/realtime", mistral_realtime.speech_socket(self))
        r.add_get("/v2/audio/voices", self._voices_search)
        r.add_get("/v1/audio/voices", self._voices_list)
        r.add_get("/v1/audio/voices/{voice_id}", self._voice_get)
        r.add_get("/v1/audio/voices/{voice_id}/sample", self._voice_sample)
        r.add_post("/v1/agents", self._agent_create)
        r.add_get("/v1/agents", self._agent_list)
        r.add_get("/v1/agents/pages", self._agent_pages)
        r.add_get("/v1/agents/{agent_id}", self._agent_get)
        r.add_delete("/v1/agents/{agent_id}", self._agent_delete)
        r.add_post("/v1/conversations", self._conversation_start)
        r.add_post("/v1/conversations/{conversation_id}", self._conversation_append)
        r.add_get("/v1/conversations/{conversation_id}/messages", self._conversation_messages)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request[ARRIVED_AT] = time.monotonic()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)  # WebSocket faults are applied by the socket handlers
        if not self.key_ok(request):
            self._log_http(request, 401)
            return web.json_response(_status_body(401), status=401)
        if self.fault_in_scope(request.path):
            if self.faults.stall_s > 0:
                await asyncio.sleep(self.faults.stall_s)
            status = self.faults.take_http_status()
            if status is not None:
                headers = {}
                if status == 429 and self.faults.retry_after_s is not None:
                    secs = self.faults.retry_after_s
                    headers["retry-after"] = f"{secs:g}"
                    headers["retry-after-ms"] = str(round(secs * 1000))
                self._log_http(request, status)
                return web.json_response(_status_body(status), status=status, headers=headers)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._log_http(request, exc.status)
            raise
        self.log.add(
            LogEntry(
                at=time.monotonic(),
                kind="http_end",
                path=request.path,
                method=request.method,
                status=response.status,
                conversation_id=request.get(CONVERSATION_ID),
            )
        )
        return response

    def _log_http(
        self,
        request: web.Request,
        status: int,
        *,
        body: dict[str, Any] | None = None,
        conversation_id: str | None = None,
        audio_bytes: int = 0,
    ) -> None:
        if conversation_id is not None:
            request[CONVERSATION_ID] = conversation_id
        self.log.add(
            LogEntry(
                at=request.get(ARRIVED_AT, time.monotonic()),
                kind="http",
                path=request.path,
                method=request.method,
                status=status,
                conversation_id=conversation_id,
                audio_bytes=audio_bytes,
                body=loggable(body) if body is not None else None,
            )
        )

    def _json(self, channel: str, payload: Any, status: int = 200) -> web.Response:
        if self.strict is not None and status == 200:
            self.strict.check(channel, "", json.dumps(payload))
        return web.json_response(payload, status=status)

    def _error(
        self, request: web.Request, status: int, detail: str, body: dict[str, Any] | None = None
    ) -> web.Response:
        self._log_http(request, status, body=body)
        if status == 422:  # FastAPI-style validation body: the SDK raises HTTPValidationError
            problem = {"loc": ["body"], "msg": detail, "type": "value_error"}
            return web.json_response({"detail": [problem]}, status=status)
        return web.json_response({"detail": detail}, status=status)

    # -- models, voices ------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self._log_http(request, 200, body=dict(request.query))
        return self._json("json:models", model_list())

    def _filtered_voices(self, request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        kind = q.get("type", "all")
        genders = q.getall("gender", [])
        languages = q.getall("language", [])
        needle = q.get("query", "").lower()
        out = []
        for v in self.voices:
            if kind != "all" and v["type"] != kind:
                continue
            if genders and v.get("gender") not in genders:
                continue
            if languages and not set(languages) & set(v.get("languages") or []):
                continue
            if needle and needle not in (v["id"] + " " + v["name"]).lower():
                continue
            if q.get("kind") and v.get("kind") != q.get("kind"):
                continue
            out.append(v)
        return out

    async def _voices_search(self, request: web.Request) -> web.StreamResponse:
        self._log_http(request, 200, body=dict(request.query))
        voices = self._filtered_voices(request)
        size = max(int(request.query.get("page_size", "10")), 1)
        token = request.query.get("page_token") or ""
        offset = int(token.removeprefix("cursor_")) if token.startswith("cursor_") else 0
        page = voices[offset : offset + size]
        more = offset + size < len(voices)
        payload = {"data": page, "next_page_token": f"cursor_{offset + size}" if more else None}
        return self._json("json:voices_page", payload)

    async def _voices_list(self, request: web.Request) -> web.StreamResponse:
        self._log_http(request, 200, body=dict(request.query))
        voices = self._filtered_voices(request)
        limit = max(int(request.query.get("limit", "10")), 1)
        offset = int(request.query.get("offset", "0"))
        payload = {
            "items": voices[offset : offset + limit],
            "total": len(voices),
            "page": offset // limit + 1,
            "page_size": limit,
            "total_pages": max(math.ceil(len(voices) / limit), 1),
        }
        return self._json("json:voices_list", payload)

    async def _voice_get(self, request: web.Request) -> web.StreamResponse:
        vid = self.known_voice(request.match_info["voice_id"])
        if vid is None:
            return self._error(request, 404, "Voice not found")
        self._log_http(request, 200)
        return self._json("json:voice", next(v for v in self.voices if v["id"] == vid))

    async def _voice_sample(self, request: web.Request) -> web.StreamResponse:
        vid = self.known_voice(request.match_info["voice_id"])
        if vid is None:
            return self._error(request, 404, "Voice not found")
        self._log_http(request, 200)
        data = wav_bytes(speech_like_pcm("Hello, this is my voice."))
        return web.Response(body=data, content_type="audio/wav")

    # -- transcription ---------------------------------------------------------------------------

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields: dict[str, Any] = {}
        audio = b""
        file_name = ""
        for key in set(form.keys()):
            values = form.getall(key)
            if key == "file":
                part = values[0]
                if isinstance(part, web.FileField):
                    audio = part.file.read()
                    file_name = part.filename
                    fields["file"] = {"filename": file_name, "bytes": len(audio)}
                continue
            texts = [v for v in values if isinstance(v, str)]
            repeated = key in ("timestamp_granularities", "context_bias")
            fields[key] = texts if repeated else (texts[0] if texts else None)
        stream = fields.get("stream") == "true"
        diarize = fields.get("diarize") == "true"
        granular = "segment" in (fields.get("timestamp_granularities") or [])
        model = str(fields.get("model") or TRANSCRIBE_MODEL)
        if self.model_info(model) is None:
            return self.model_error(request, model, fields)
        if fields.get("turn_detection") is not None:
            # https://docs.mistral.ai/studio/audio/speech-to-text/turn-detection
            return self._error(
                request,
                400,
                "turn_detection is only supported on the realtime transcription endpoint",
                fields,
            )
        self._log_http(request, 200, body=fields, audio_bytes=len(audio))

        decoded = read_wav(audio)
        if decoded is not None:
            pcm, rate = decoded
            duration = len(pcm) / rate
            start, end = speech_span(pcm, rate, self.speech_threshold_dbfs)
        else:  # not a WAV (e.g. mp3): assume 16 kHz 16-bit for a duration estimate
            duration = len(audio) / 32000.0
            start, end = 0.0, duration
        turn = self.next_turn("transcribe")
        scripted = turn.speaker_segments()
        text = " ".join(t for _, t in scripted)
        segments = [
            {"type": "transcription_segment", "text": t, "start": s, "end": e}
            | ({"speaker_id": spk} if diarize else {})
            for spk, t, s, e in spread_segments(scripted, start, end)
        ]
        usage = {
            "prompt_tokens": 0,
            "completion_tokens": len(text.split()),
            "total_tokens": len(text.split()),
            "prompt_audio_seconds": max(math.ceil(duration), 1),
        }
        done: dict[str, Any] = {"model": model, "text": text, "language": "en", "usage": usage}
        if granular or diarize:
            done["segments"] = segments
        await self.pace(self.timing.first_transcript_delay_s)
        if not stream:
            return self._json("json:transcription", done)

        out = SSEOutlet(self, request, "sse:transcription")
        await out.open()
        try:
            await out.send({"type": "transcription.language", "audio_language": "en"})
            for piece in word_pieces(text):
                await out.send({"type": "transcription.text.delta", "text": piece})
                await self.pace(self.timing.token_interval_s)
            if "segments" in done:
                for seg in segments:
                    await out.send(
                        {k: v for k, v in seg.items() if k != "type"}
                        | {"type": "transcription.segment"}
                    )
            await out.send({"type": "transcription.done", **done})
        except StreamDropped:
            return out.response
        return await out.finish()

    # -- speech ------------------------------------------------------------------------------------

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = str(body.get("input", ""))
        fmt = str(body.get("response_format") or "mp3")
        if not text.strip():
            return self._error(request, 422, "input must not be empty", body)
        if self.model_info(body.get("model")) is None:
            return self.model_error(request, str(body.get("model")), body)
        if body.get("voice_id") is None and not body.get("ref_audio"):
            # every documented speech call passes a voice (or reference audio)
            return self._error(request, 422, "voice_id or ref_audio is required", body)
        if self.known_voice(body.get("voice_id")) is None and not body.get("ref_audio"):
            return self._error(request, 404, f"Voice {body.get('voice_id')!r} not found", body)
        self._log_http(request, 200, body=body)
        pcm = speech_like_pcm(text)
        usage = {
            "prompt_tokens": len(text.split()),
            "completion_tokens": max(len(pcm) // (RATE // 12), 1),
            "total_tokens": len(text.split()) + max(len(pcm) // (RATE // 12), 1),
        }
        await self.pace(self.timing.first_audio_delay_s)
        if not body.get("stream"):
            # pcm: raw float32 LE; every other format is answered as 16-bit WAV (no encoders here)
            data = pcm.astype("<f4").tobytes() if fmt == "pcm" else wav_bytes(pcm)
            return self._json("json:speech", {"audio_data": base64.b64encode(data).decode()})

        out = SSEOutlet(self, request, "sse:speech")
        await out.open()

        async def send(chunk: np.ndarray) -> None:
            await out.send({"type": "speech.audio.delta", "audio_data": f32_b64(chunk)})

        try:
            await paced_chunks(pcm, self.timing, send)
            await out.send({"type": "speech.audio.done", "usage": usage})
        except StreamDropped:
            return out.response
        return await out.finish()

    # -- agents ----------------------------------------------------------------------------------

    async def _agent_create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("model") or not body.get("name"):
            return self._error(request, 422, "model and name are required", body)
        if self.model_info(body["model"]) is None:
            return self.model_error(request, str(body["model"]), body)
        agent_id = "ag_" + new_id("x")[2:26]
        now = now_iso()
        agent = {
            key: body[key]
            for key in (
                "instructions",
                "tools",
                "completion_args",
                "guardrails",
                "description",
                "handoffs",
                "metadata",
                "version_message",
            )
            if key in body
        } | {
            "model": body["model"],
            "name": body["name"],
            "id": agent_id,
            "object": "agent",
            "version": 0,
            "versions": [0],
            "created_at": now,
            "updated_at": now,
            "deployment_chat": False,
            "source": "api",
            "owner_id": "00000000-0000-4000-8000-000000000000",
        }
        self.agents[agent_id] = agent
        self._log_http(request, 200, body=body)
        return self._json("json:agent", agent)

    async def _agent_get(self, request: web.Request) -> web.StreamResponse:
        agent = self.agents.get(request.match_info["agent_id"])
        if agent is None:
            return self._error(request, 404, "Agent not found")
        self._log_http(request, 200)
        return self._json("json:agent", agent)

    async def _conversation_messages(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/conversations/{id}/messages``: the stored entries (a reply is stored
        whole even when its stream was cut)."""
        cid = request.match_info["conversation_id"]
        history = self.conversations.get(cid)
        if history is None:
            return self._error(request, 404, "Conversation not found")
        self._log_http(request, 200, conversation_id=cid)
        messages = [
            {
                "object": "entry",
                "type": "message.input" if h["role"] == "user" else "message.output",
                "role": h["role"],
                "content": h["content"],
                "id": f"msg_{cid}_{i}",
                "created_at": now_iso(),
                **({"model": h["model"]} if h["role"] == "assistant" else {}),
            }
            for i, h in enumerate(history)
        ]
        payload = {"object": "conversation.messages", "conversation_id": cid, "messages": messages}
        return self._json("json:conversation_messages", payload)

    async def _agent_list(self, request: web.Request) -> web.StreamResponse:
        self._log_http(request, 200, body=dict(request.query))
        page = int(request.query.get("page", "0"))
        size = max(int(request.query.get("page_size", "20")), 1)
        agents = list(self.agents.values())[page * size : (page + 1) * size]
        return self._json("json:agent_list", agents)

    async def _agent_pages(self, request: web.Request) -> web.StreamResponse:
        self._log_http(request, 200, body=dict(request.query))
        size = max(int(request.query.get("page_size", "20")), 1)
        token = request.query.get("page_token") or ""
        offset = int(token.removeprefix("cursor_")) if token.startswith("cursor_") else 0
        agents = list(self.agents.values())
        more = offset + size < len(agents)
        payload = {
            "object": "list",
            "data": agents[offset : offset + size],
            "next_page_token": f"cursor_{offset + size}" if more else None,
        }
        return self._json("json:agent_page", payload)

    async def _agent_delete(self, request: web.Request) -> web.StreamResponse:
        if self.agents.pop(request.match_info["agent_id"], None) is None:
            return self._error(request, 404, "Agent not found")
        self._log_http(request, 204)
        return web.Response(status=204)

    # -- conversations ---------------------------------------------------------------------------

    async def _conversation_start(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        agent_id = body.get("agent_id")
        if agent_id is not None and agent_id not in self.agents:
            return self._error(request, 404, f"Agent {agent_id} not found", body)
        if agent_id is None and not body.get("model"):
            return self._error(request, 422, "agent_id or model is required", body)
        if agent_id is None and self.model_info(body["model"]) is None:
            return self.model_error(request, str(body["model"]), body)
        conversation_id = new_id("conv")
        self.conversations[conversation_id] = []
        model = self.agents[agent_id]["model"] if agent_id else str(body["model"])
        return await self._converse(request, body, conversation_id, model, agent_id)

    async def _conversation_append(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        conversation_id = request.match_info["conversation_id"]
        history = self.conversations.get(conversation_id)
        if history is None:
            return self._error(request, 404, f"Conversation {conversation_id} not found", body)
        first = history[0] if history else {}
        return await self._converse(
            request, body, conversation_id, first.get("model", LLM_MODEL), first.get("agent_id")
        )

    async def _converse(
        self,
        request: web.Request,
        body: dict[str, Any],
        conversation_id: str,
        model: str,
        agent_id: str | None,
    ) -> web.StreamResponse:
        self._log_http(request, 200, body=body, conversation_id=conversation_id)
        inputs = body.get("inputs")
        user_text = (
            inputs
            if isinstance(inputs, str)
            else " ".join(str(i.get("content", "")) for i in inputs or [] if isinstance(i, dict))
        )
        history = self.conversations[conversation_id]
        history.append({"role": "user", "content": user_text, "model": model, "agent_id": agent_id})
        turn = self.next_turn("conversation")
        pieces = word_pieces(turn.reply)
        prompt_tokens = sum(len(str(h["content"]).split()) for h in history) + 20
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }
        tool_id = new_id("tool")
        msg_id = new_id("msg")
        arguments = json.dumps({"query": user_text})
        if turn.tool:
            usage |= {"connector_tokens": 12, "connectors": {turn.tool: 1}}
        history.append({"role": "assistant", "content": turn.reply, "model": model})
        extra_agent = {"agent_id": agent_id} if agent_id else {}

        if not body.get("stream"):
            await self.pace(self.tool_delay_s if turn.tool else 0.0)
            await self.pace(
                self.timing.first_token_delay_s
                + self.timing.token_interval_s * max(len(pieces) - 1, 0)
            )
            outputs: list[dict[str, Any]] = []
            if turn.tool:
                outputs.append(
                    {
                        "object": "entry",
                        "type": "tool.execution",
                        "name": turn.tool,
                        "arguments": arguments,
                        "id": tool_id,
                        "created_at": now_iso(),
                        "completed_at": now_iso(),
                        "info": {},
                    }
                )
            outputs.append(
                {
                    "object": "entry",
                    "type": "message.output",
                    "role": "assistant",
                    "id": msg_id,
                    "model": model,
                    "created_at": now_iso(),
                    "completed_at": now_iso(),
                    "content": [{"type": "text", "text": turn.reply}],
                }
                | extra_agent
            )
            payload = {
                "object": "conversation.response",
                "conversation_id": conversation_id,
                "outputs": outputs,
                "usage": usage,
            }
            return self._json("json:conversation", payload)

        out = SSEOutlet(self, request, "sse:conversation")
        out.conversation_id = conversation_id
        await out.open()
        try:
            await out.send(
                {
                    "type": "conversation.response.started",
                    "conversation_id": conversation_id,
                    "created_at": now_iso(),
                }
            )
            if self.conversation_error is not None:
                message, self.conversation_error = self.conversation_error, None
                await out.send(
                    {
                        "type": "conversation.response.error",
                        "message": message,
                        "code": 3000,
                        "created_at": now_iso(),
                    }
                )
                return await out.finish()
            index = 0
            if turn.tool:
                base = {"id": tool_id, "name": turn.tool, "output_index": 0}
                await out.send(
                    {"type": "tool.execution.started", "arguments": "", "created_at": now_iso()}
                    | base
                    | extra_agent
                    | {"model": model}
                )
                await out.send(
                    {
                        "type": "tool.execution.delta",
                        "arguments": arguments,
                        "created_at": now_iso(),
                    }
                    | base
                )
                await self.pace(self.tool_delay_s)
                await out.send(
                    {"type": "tool.execution.done", "info": {}, "created_at": now_iso()} | base
                )
                index = 1
            await self.pace(self.timing.first_token_delay_s)
            for i, piece in enumerate(pieces):
                if i:
                    await self.pace(self.timing.token_interval_s)
                await out.send(
                    {
                        "type": "message.output.delta",
                        "id": msg_id,
                        "output_index": index,
                        "content_index": 0,
                        "role": "assistant",
                        "model": model,
                        "content": piece,
                        "created_at": now_iso(),
                    }
                    | extra_agent
                )
            await out.send(
                {"type": "conversation.response.done", "usage": usage, "created_at": now_iso()}
            )
        except StreamDropped:
            return out.response
        return await out.finish()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted (for manual runs and benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m voicetui.testing.emulators.mistral")
    add_common_arguments(parser, default_port=8765)
    parser.add_argument(
        "--transcript-delay", type=float, default=0.0, metavar="S", help="first STT result"
    )
    parser.add_argument(
        "--tool-delay", type=float, default=0.0, metavar="S", help="web search duration"
    )
    parser.add_argument(
        "--speakers",
        nargs="+",
        metavar="SPEAKER=TEXT",
        help="diarized segments of every turn, e.g. speaker_1='Hi there.' speaker_2='Hello.'",
    )
    parser.add_argument("--tool", default=None, help="e.g. web_search: every reply searches first")
    args = parser.parse_args(argv)

    emu = MistralEmulator(port=args.port)
    if args.strict:
        emu.enable_strict().on_violation = lambda v: print(f"STRICT: {v}", file=sys.stderr)
    emu.timing.first_transcript_delay_s = args.transcript_delay
    emu.tool_delay_s = args.tool_delay
    segments = [
        (speaker, text)
        for speaker, eq, text in (s.partition("=") for s in args.speakers or [])
        if eq  # SPEAKER=TEXT only
    ]
    apply_common_arguments(emu, args, segments=segments or None, tool=args.tool)
    return serve_forever(emu, lambda: f"mistral emulator on {emu.base_url}")


if __name__ == "__main__":
    raise SystemExit(main())
