"""OpenAI Realtime (spec ``ai-voice-conv.openai``) over the official SDK's WebSocket.

``AsyncOpenAI(base_url=baseUrl + "/v1").realtime.connect(model=...)``, GA event names,
dispatch on ``event.type`` (the SDK parses unknown types into the wrong class, so never
``isinstance``). What this module adds on top of the wire:

* **session.update** from the settings: model, voice, instructions, ``server_vad`` with the
  configured threshold/padding/silence (or ``null`` for push-to-talk), input transcription
  (``gpt-4o-transcribe-diarize`` gives speaker-labelled segments).
* **Audio**: mic frames go out as base64 PCM16 24 kHz; ``response.output_audio.delta`` is
  decoded straight into the playback buffer as it arrives.
* **Replies** go through the engine's reply ledger (``ctx.replies``): transcript deltas are
  the text the audio speaks, ``response.done`` is "generation done"; the ledger makes the
  line final once it has played out.
* **Barge-in**: speech while the assistant is audible (and the duplex gate agrees) asks the
  ledger to cut; the ledger silences playback and calls :meth:`cancel`, which sends
  ``response.cancel`` and ``conversation.item.truncate`` at the milliseconds actually
  played. Late deltas of a cancelled response are dropped.
* **Failures**: 401 at the handshake -> ``key_rejected`` (never retried); a dropped socket
  reconnects with exponential backoff (jittered, capped; at most a handful of attempts a
  minute, see :mod:`.renewal`), re-sends the session settings, seeds the new server session
  with the conversation so far as text items, and asks again for a reply the drop cut short
  (the user gets it whole); malformed frames and unknown events are logged and skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, DuplexPolicy
from voicetui.engine.events import (
    AssistantDone,
    ErrorEvent,
    Reconnected,
    Reconnecting,
    SessionWarning,
    Usage,
    UserSpeechStarted,
    UserSpeechStopped,
    UserTranscript,
)
from voicetui.engine.replies import Reply
from voicetui.engine.rollover import seed_messages
from voicetui.providers.base import (
    ProviderError,
    ProviderOption,
    ProviderSettings,
    SessionContext,
    Voice,
    import_quietly,
)
from voicetui.providers.catalog import Listing
from voicetui.providers.openai.catalog import CATALOG
from voicetui.providers.openai.renewal import (
    ReconnectPacer,
    backoff_s,
    renewal_schedule,
    server_lifetime_s,
)
from voicetui.specs.model import SpecSource
from voicetui.specs.openai import SOURCE

if TYPE_CHECKING:
    from openai.resources.realtime.realtime import AsyncRealtimeConnection

SPEC_KEY = SOURCE.spec.key
DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
DEFAULT_TRANSCRIPTION_MODEL = CATALOG.defaults["transcriptionModel"]

OPTIONS: dict[str, ProviderOption] = {
    # DIARIZE_MODEL adds speaker labels to the user's lines.
    "transcriptionModel": ProviderOption(
        DEFAULT_TRANSCRIPTION_MODEL, {"type": "string", "minLength": 1}
    ),
    "vadThreshold": ProviderOption(0.5, {"type": "number", "minimum": 0, "maximum": 1}),
    "silenceDurationMs": ProviderOption(500, {"type": "integer", "minimum": 0, "maximum": 10000}),
    "prefixPaddingMs": ProviderOption(300, {"type": "integer", "minimum": 0, "maximum": 10000}),
}
MIN_COMMIT_SAMPLES = ENGINE_RATE // 10  # 100 ms
BARGE_DECISION_S = 0.5  # how long the echo gate may take to recognise the user's voice

VOICES = ("marin", "cedar", "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse")

# error codes that need no user attention
_QUIET_ERRORS = {"response_cancel_not_active"}

# server events that need no action (known, so not logged as unknown)
_IGNORED_EVENTS = {
    "conversation.created",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.created",
    "conversation.item.deleted",
    "conversation.item.retrieved",
    "input_audio_buffer.cleared",
    "input_audio_buffer.timeout_triggered",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_item.done",
    "response.output_audio.done",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "output_audio_buffer.cleared",
}


def speaker_label(raw: Any) -> str | None:
    """``speaker_1`` style labels; the service's ``A``/``B`` become ``speaker_1``/``speaker_2``."""
    if raw is None:
        return None
    label = str(raw).strip()
    if re.fullmatch(r"[A-Z]", label):
        return f"speaker_{ord(label) - ord('A') + 1}"
    if re.fullmatch(r"\d+", label):
        return f"speaker_{int(label) + 1}"
    return label or None


def session_config(settings: ProviderSettings, *, server_interrupts: bool = True) -> dict[str, Any]:
    """The ``session`` object of ``session.update`` for these settings.

    ``server_interrupts``: let the service cancel a reply as soon as its VAD hears speech.
    Off when the client's echo gate decides (it cancels with ``response.cancel`` itself),
    or the assistant's own voice coming back through the mic would cut every reply.
    """
    extras = settings.extras
    turn_detection: dict[str, Any] | None = None
    if settings.turn_detection == "server_vad":
        turn_detection = {
            "type": "server_vad",
            "threshold": float(extras.get("vadThreshold", 0.5)),
            "prefix_padding_ms": int(extras.get("prefixPaddingMs", 300)),
            "silence_duration_ms": int(extras.get("silenceDurationMs", 500)),
            "create_response": True,
            "interrupt_response": server_interrupts,
        }
    transcription = {"model": str(extras.get("transcriptionModel", DEFAULT_TRANSCRIPTION_MODEL))}
    fmt = {"type": "audio/pcm", "rate": ENGINE_RATE}
    return {
        "type": "realtime",
        "model": settings.model,
        "instructions": settings.instructions,
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": fmt,
                "turn_detection": turn_detection,
                "transcription": transcription,
            },
            "output": {"format": fmt, "voice": settings.voice},
        },
    }


def _handshake_error(exc: BaseException, settings: ProviderSettings) -> ProviderError:
    """Map a failed WebSocket opening to one clear line."""
    from websockets.exceptions import InvalidStatus

    where = settings.base_url
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return ProviderError(
                "OpenAI rejected the API key (HTTP 401): set a valid key with "
                "`voicetui keys set openai`",
                code="key_rejected",
            )
        if status == 403:
            return ProviderError(
                f"OpenAI refused access (HTTP 403): check that the key may use {settings.model}",
                code="key_rejected",
            )
        if status == 429:
            return ProviderError(
                "OpenAI is rate limiting this key (HTTP 429); try again shortly",
                code="rate_limited",
                retryable=True,
            )
        if status >= 500:
            return ProviderError(
                f"OpenAI had a server error (HTTP {status}); try again shortly",
                code="server",
                retryable=True,
            )
        return ProviderError(
            f"OpenAI refused the connection (HTTP {status}) at {where}", code="protocol"
        )
    if isinstance(exc, TimeoutError):
        return ProviderError(
            f"OpenAI did not answer in time at {where}", code="network", retryable=True
        )
    if isinstance(exc, ConnectionRefusedError):
        return ProviderError(
            f"cannot reach OpenAI at {where}: connection refused", code="network", retryable=True
        )
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ProviderError(
            f"cannot reach OpenAI at {where}: {reason}", code="network", retryable=True
        )
    return ProviderError(
        f"could not open the OpenAI session at {where}: {exc}", code="network", retryable=True
    )


class OpenAIRealtimeSession:
    """One conversation over one (or, after drops, several) Realtime sockets."""

    def __init__(self, ctx: SessionContext, provider: OpenAIRealtimeProvider) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.log = ctx.log
        self._provider = provider
        self._conn: AsyncRealtimeConnection | None = None
        self._closing = False
        self._expired = False
        self._event_ids = itertools.count(1)
        self._diarize = str(self.settings.extras.get("transcriptionModel", "")) == DIARIZE_MODEL
        self._ptt = self.settings.turn_detection == "push_to_talk"
        # full duplex trusts the service's VAD to interrupt; otherwise the echo gate decides
        self._server_interrupts = ctx.gate.policy == DuplexPolicy.FULL
        self._barge_deadline: float | None = None  # speech over the assistant, gate undecided
        self._barge_item: str | None = None  # the server item of that undecided speech
        # speech the gate took for echo: never shown, deleted from the server's conversation
        # once committed, never answered (a refused turn is never half-shown)
        self._echo_items: set[str] = set()
        self._echo_committed = False  # an echo item was committed: the server may answer it
        self._echo_responses: set[str] = set()  # responses to echo, cancelled on creation
        # assistant side: server item id -> the ledger's reply (a re-asked reply keeps its
        # ledger entry across the items that carry it)
        self._replies: dict[str, Reply] = {}
        self._item_of: dict[str, str] = {}  # ledger reply id -> server item id carrying it
        self._response_of: dict[str, str] = {}  # server item id -> response id
        self._reask: Reply | None = None  # cut short by a drop: asked again on the new socket
        self._server_cut = False  # the service cancelled the response itself (its VAD)
        self._active_response: str | None = None
        self._cancelled_responses: set[str] = set()
        self._need_reply = False  # a user turn was committed and no response started yet
        # user side
        self._turn_of_item: dict[str, str] = {}
        self._partials: dict[str, str] = {}
        self._segments: dict[str, int] = {}  # item -> segments emitted
        self._plain_final: set[str] = set()  # items with an unlabelled final already out
        self._ptt_turn: str | None = None
        self._turn_samples = 0
        # the conversation so far, for seeding a new socket: [role, key, text]
        self._history: list[list[str]] = []
        ctx.replies.on_final(self._on_reply_final)
        self._rollover: asyncio.Task[None] | None = None
        self._rolling_over = False
        self._expires_at: float | None = None  # epoch seconds on the server's clock
        self._opened_at = 0.0  # time.monotonic() when the current socket's handshake completed
        self._pacer = ReconnectPacer(
            base_s=provider.reconnect_base_delay_s,
            cap_s=4 * provider.reconnect_base_delay_s,
            per_window=provider.reconnects_per_minute,
        )
        self._talking = False  # push-to-talk key down
        self._turn_audio: list[str] = []  # base64 frames of the last push-to-talk turn
        self._user_speaking = False  # server VAD: between speech started and stopped
        self.session_ids: list[str] = []  # server session ids, one per socket
        self._renew_audio: list[str] | None = None  # mic frames sent while renewing

    # --- ProviderSession ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket, configure the session and wait until the server applied it.
        A busy service (429, 5xx) is tried again with the reconnect backoff."""
        attempts = self._provider.max_reconnect_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._open(seed=False)
                break
            except ProviderError as exc:
                if exc.code not in ("rate_limited", "server") or attempt == attempts:
                    raise
                base = self._provider.reconnect_base_delay_s
                delay = backoff_s(base, attempt - 1, cap_s=4 * base)
                self.log.warning(
                    "connect attempt %d failed (%s); again in %.1f s", attempt, exc, delay
                )
                await asyncio.sleep(delay)
        self._watch_expiry()

    async def run(self) -> None:
        """Receive until closed; reconnect on drops; raise ProviderError when giving up."""
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        while not self._closing:
            conn = self._conn
            if conn is None:
                await self._reconnect("not connected")
                continue
            try:
                await self._receive(conn)
            except ConnectionClosedOK:
                if self._is_closing():
                    return
                if self._conn is not conn and self._conn is not None:
                    continue  # renewed (session rollover): receive from the new socket
                planned, expired = self._rolling_over, self._expired
                self._rolling_over = self._expired = False
                if planned:  # we closed it: a fresh session before the service's cap
                    await self._reconnect("renewing the session before its time limit", now=True)
                elif expired:  # the service's cap: roll over the same way
                    await self._reconnect("the service ended the session at its time limit")
                else:
                    self.log.info("OpenAI closed the session normally")
                    return
            except (ConnectionClosed, OSError) as exc:
                if self._is_closing():
                    return
                if self._conn is not conn and self._conn is not None:
                    continue  # renewed (session rollover): receive from the new socket
                reason = _close_reason(exc)
                self.log.warning("OpenAI socket dropped: %s", reason)
                await self._reconnect(reason)

    def _is_closing(self) -> bool:
        return self._closing

    async def send_audio(self, frame: CaptureFrame) -> None:
        """Append one mic frame (dropped while reconnecting)."""
        pcm = np.asarray(frame.pcm, dtype="<i2")
        self._turn_samples += len(pcm)
        payload = base64.b64encode(pcm.tobytes()).decode("ascii")
        if self._renew_audio is not None:
            self._renew_audio.append(payload)  # the new session hears it too
        if self._talking:
            self._turn_audio.append(payload)  # kept until transcribed: a drop may lose it
        await self._send({"type": "input_audio_buffer.append", "audio": payload}, quiet=True)
        if self._barge_deadline is not None:
            await self._decide_barge_in()

    async def _decide_barge_in(self) -> None:
        """Speech started over the assistant: cut it as soon as the gate says it is the user,
        not echo; give up at the deadline."""
        deadline = self._barge_deadline
        if deadline is None:
            return
        if not self._assistant_busy():
            self._barge_deadline = None
            self._user_turn_started()  # the reply ended under it: an ordinary turn
        elif self.ctx.gate.allows_barge_in():
            self._barge_deadline = None
            await self.ctx.replies.cut("barge_in")
            self._user_turn_started()
        elif time.monotonic() > deadline:
            self._refuse_barge_in()

    def _user_turn_started(self) -> None:
        """The undecided speech is the user's: show the turn now."""
        item_id, self._barge_item = self._barge_item, None
        if item_id is not None:
            self.ctx.emit(UserSpeechStarted(turn_id=self._turn(item_id)))

    def _refuse_barge_in(self) -> None:
        """The gate took the speech over the reply for echo: say so, and drop the turn."""
        self._barge_deadline = None
        item_id, self._barge_item = self._barge_item, None
        if item_id is not None:
            self._echo_items.add(item_id)
        self.log.info("speech over the assistant taken for echo by the duplex gate")
        self.ctx.emit(SessionWarning(code="barge_in_refused", message="taken for echo"))

    async def start_user_turn(self) -> None:
        """Talk key down (the engine has cut the assistant already): a clean buffer."""
        if self._assistant_busy():
            await self.ctx.replies.cut("barge_in")
        self._talking = True
        self._turn_audio = []
        self._ptt_turn = self.ctx.new_turn_id("ptt_")
        self._turn_samples = 0
        await self._send({"type": "input_audio_buffer.clear"})
        self.ctx.emit(UserSpeechStarted(turn_id=self._ptt_turn))

    async def end_user_turn(self) -> None:
        """Talk key up: commit (never under 100 ms) and ask for the reply."""
        turn = self._ptt_turn or self.ctx.new_turn_id("ptt_")
        self._talking = False
        self.ctx.emit(UserSpeechStopped(turn_id=turn))
        if self._turn_samples < MIN_COMMIT_SAMPLES:
            self.log.info("turn shorter than 100 ms: cleared, not committed")
            await self._send({"type": "input_audio_buffer.clear"})
            self.ctx.emit(AssistantDone(turn_id=turn, status="cancelled"))
            return
        self._need_reply = True
        await self._send({"type": "input_audio_buffer.commit", "event_id": self._eid()})
        await self._send({"type": "response.create", "event_id": self._eid()})

    async def interrupt(self) -> None:
        """Interrupt key: cancel the reply and cut playback at what was heard."""
        await self.ctx.replies.cut("user_key")

    async def cancel(self, reply: Reply, heard_ms: int, heard_text: str) -> None:
        """The engine cut ``reply``: cancel its response and truncate the server's item at
        what was played, so the model's context holds only what the user heard."""
        item_id = self._item_of.get(reply.id, reply.id)
        response = self._response_of.get(item_id)
        server_cut, self._server_cut = self._server_cut, False
        if response is not None:
            self._cancelled_responses.add(response)
        if reply is self._reask:
            self._reask = None
            self._need_reply = False
        active = self._active_response
        if active is not None:
            self._cancelled_responses.add(active)
            if not server_cut:
                await self._send({"type": "response.cancel", "event_id": self._eid()})
        if heard_ms > 0 and item_id in self._response_of:
            await self._send(
                {
                    "type": "conversation.item.truncate",
                    "event_id": self._eid(),
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": heard_ms,
                }
            )

    async def close(self) -> None:
        """Close the socket (the engine's ledger finalizes lines still playing)."""
        self._closing = True
        if self._rollover is not None:
            self._rollover.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 3.0)

    # --- connection -------------------------------------------------------------------------

    async def _open(self, *, seed: bool) -> None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            api_key=self.ctx.api_key, base_url=self.settings.base_url + "/v1", max_retries=0
        )
        manager = client.realtime.connect(model=self.settings.model)
        try:
            conn = await asyncio.wait_for(manager.enter(), self._provider.connect_timeout_s)
        except Exception as exc:
            raise _handshake_error(exc, self.settings) from None
        self._conn = conn
        self._opened_at = time.monotonic()
        try:
            await self._send(
                {
                    "type": "session.update",
                    "event_id": self._eid(),
                    "session": session_config(
                        self.settings, server_interrupts=self._server_interrupts
                    ),
                }
            )
            if seed:
                await self._seed()
            await self._await_session_updated(conn)
            if seed:
                await self._resume_turn()
        except ProviderError:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        except Exception as exc:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise ProviderError(
                f"the OpenAI session did not start: {_close_reason(exc)}",
                code="network",
                retryable=True,
            ) from None

    async def _resume_turn(self) -> None:
        """After a new socket: re-send the push-to-talk turn the old one lost, and ask again
        for an answer the old socket never gave."""
        if self._talking or (self._need_reply and self._turn_audio):
            for payload in self._turn_audio:  # the new server session never heard it
                await self._send({"type": "input_audio_buffer.append", "audio": payload})
        if self._talking:
            return  # the key is still down: the commit comes with the release
        if self._need_reply:
            if self._turn_audio:
                await self._send({"type": "input_audio_buffer.commit", "event_id": self._eid()})
            await self._send({"type": "response.create", "event_id": self._eid()})

    async def _await_session_updated(self, conn: AsyncRealtimeConnection) -> None:
        async with asyncio.timeout(self._provider.connect_timeout_s):
            while True:
                try:
                    event = await conn.recv()
                except json.JSONDecodeError:
                    self.log.warning("malformed frame from OpenAI skipped")
                    continue
                etype = str(getattr(event, "type", "") or "")
                if etype == "session.updated":
                    return
                if etype == "error":
                    err = getattr(event, "error", None)
                    code = str(getattr(err, "code", "") or "")
                    message = str(getattr(err, "message", "") or "unknown error")
                    if code == "invalid_api_key":
                        raise ProviderError(
                            "OpenAI rejected the API key: set a valid key with "
                            "`voicetui keys set openai`",
                            code="key_rejected",
                        )
                    if code not in _QUIET_ERRORS and not code.startswith("item_"):
                        raise ProviderError(
                            f"OpenAI rejected the session settings: {message}", code="config"
                        )
                    continue
                await self._dispatch(event)

    async def _seed(self) -> None:
        """Re-create the conversation so far as text items on the new server session."""
        entries = [(role, text) for role, _key, text in self._history]
        keys = {key for _role, key, _text in self._history}
        seen: set[str] = set()
        for reply in self._replies.values():  # generated in full, still playing
            if reply.final is None and reply.generated and reply.id not in keys | seen:
                seen.add(reply.id)
                entries.append(("assistant", reply.text))
        for role, text in entries:
            if not text:
                continue
            part = "input_text" if role == "user" else "output_text"
            await self._send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": role,
                        "content": [{"type": part, "text": text}],
                    },
                }
            )

    async def _reconnect(self, reason: str, *, now: bool = False) -> None:
        """Reconnect paced by :class:`ReconnectPacer` (backoff 1 s, 2 s, 4 s… over
        consecutive failures, up to 25 % jitter so many clients do not retry in step, at most
        a handful of attempts a minute), then give up with one clear line. ``now``: a planned
        renewal, whose first attempt needs no backoff."""
        old, self._conn = self._conn, None
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), 1.0)
        self._pacer.session_ended(time.monotonic() - self._opened_at, planned=now)
        self._abandon_inflight()
        attempts = self._provider.max_reconnect_attempts
        last = reason
        for attempt in range(1, attempts + 1):
            delay = self._pacer.delay_s(time.monotonic(), planned=now)
            self.ctx.emit(Reconnecting(attempt=attempt, delay_s=round(delay, 3), reason=last))
            await asyncio.sleep(delay)
            if self._closing:
                return
            self._pacer.attempt(time.monotonic())
            try:
                await self._reopen_with_fresh_key()
            except ProviderError as exc:
                if exc.code == "key_rejected" or not exc.retryable:
                    raise
                last = str(exc)
                self._pacer.attempt_failed()
                self.log.warning("reconnect attempt %d failed: %s", attempt, exc)
                continue
            self.ctx.emit(Reconnected(attempt=attempt))
            self._watch_expiry()
            return
        if self._reask is not None:
            self.ctx.replies.lost(self._reask, "the connection to OpenAI was lost")
            self._reask = None
        raise ProviderError(
            f"lost the connection to OpenAI and could not reconnect ({last})",
            code="network",
        )

    async def _reopen_with_fresh_key(self) -> None:
        """A seeded new socket; when the service rejects the key (rotated in the secret
        manager since), ``ctx.refresh_key`` gives a fresh one once, or raises the line that
        ends the session."""
        while True:
            try:
                await self._open(seed=True)
                return
            except ProviderError as exc:
                if exc.code != "key_rejected" or self._closing:
                    raise
                await self.ctx.refresh_key(exc)

    async def renew(self) -> str:
        """Session rollover (the engine calls it between turns, before the session limit):
        open a new server session, configure it, replay the conversation so far as text
        items (or a summary when over the provider's ``seed_budget_chars``), then switch to
        it and close the old one. Mic frames sent meanwhile go to both, so the new session
        misses nothing. Raises :class:`ProviderError`; the old session is untouched then."""
        from openai import AsyncOpenAI

        old = self._conn
        if old is None or self._closing:
            raise ProviderError("not connected to OpenAI", code="network", retryable=True)
        history = [(role, text) for role, _key, text in self._history]
        messages, how = seed_messages(history, self._provider.seed_budget_chars)
        events: list[dict[str, Any]] = [
            {
                "type": "session.update",
                "event_id": self._eid(),
                "session": session_config(self.settings, server_interrupts=self._server_interrupts),
            }
        ]
        for message in messages:
            part = "output_text" if message.role == "assistant" else "input_text"
            events.append(
                {
                    "type": "conversation.item.create",
                    "event_id": self._eid(),
                    "item": {
                        "type": "message",
                        "role": message.role,
                        "content": [{"type": part, "text": message.text}],
                    },
                }
            )
        self._renew_audio = []
        try:
            client = AsyncOpenAI(
                api_key=self.ctx.api_key, base_url=self.settings.base_url + "/v1", max_retries=0
            )
            manager = client.realtime.connect(model=self.settings.model)
            try:
                new = await asyncio.wait_for(manager.enter(), self._provider.connect_timeout_s)
            except Exception as exc:
                raise _handshake_error(exc, self.settings) from None
            try:
                for event in events:
                    await new.send_raw(json.dumps(event))
                sent = 0
                while sent < len(self._renew_audio):  # frames keep coming while we send
                    payload = self._renew_audio[sent]
                    await new.send_raw(
                        json.dumps({"type": "input_audio_buffer.append", "audio": payload})
                    )
                    sent += 1
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(new.close(), 1.0)
                raise ProviderError(
                    f"the new OpenAI session did not start: {_close_reason(exc)}",
                    code="network",
                    retryable=True,
                ) from None
        finally:
            self._renew_audio = None
        # no await from the last replayed frame to here: nothing falls between the sockets
        self._conn = new
        self._opened_at = time.monotonic()
        self._expires_at = None  # the new session.created brings its own: watched from there
        if self._rollover is not None:
            self._rollover.cancel()
            self._rollover = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.close(), 1.0)
        self.log.info("session renewed (%s, %d messages seeded)", how, len(messages))
        return how

    def _watch_expiry(self) -> None:
        """Renew the session shortly before the service's cap, at a quiet moment, so a long
        conversation never hits the hard cut mid-reply. The schedule runs on the monotonic
        clock from this socket's handshake (see :mod:`.renewal`)."""
        if self._rollover is not None:
            self._rollover.cancel()
        conn = self._conn
        if conn is None:
            return
        lifetime = server_lifetime_s(conn, self._expires_at)
        renew_after, hard = renewal_schedule(lifetime, self._provider.rollover_margin_s)
        if lifetime is None:
            self.log.info("session lifetime unknown; renewing after %.0f s", renew_after)
        self._rollover = asyncio.create_task(
            self._rollover_when_due(conn, self._opened_at + renew_after, self._opened_at + hard),
            name="openai-rollover",
        )

    async def _rollover_when_due(
        self, conn: AsyncRealtimeConnection, renew_at: float, hard_at: float
    ) -> None:
        await asyncio.sleep(max(renew_at - time.monotonic(), 0.0))
        # wait for a quiet moment (polled: it depends on playback as well as the wire)
        while self._conn is conn and time.monotonic() < hard_at:
            if not (self._talking or self._user_speaking or self._assistant_busy()):
                break
            await asyncio.sleep(0.05)
        if self._conn is not conn or self._closing:
            return
        self.log.info("renewing the OpenAI session before it expires")
        self._rolling_over = True
        with contextlib.suppress(Exception):
            await conn.close()

    def _abandon_inflight(self) -> None:
        """The socket died mid-reply: the user would get half an answer, so the reply starts
        over on the new socket (its partial audio stops; the whole reply comes again)."""
        response = self._active_response
        self._active_response = None
        if response is None or response in self._cancelled_responses:
            return  # nothing in flight, or the user had cut it already
        self._cancelled_responses.add(response)
        for item_id, rid in self._response_of.items():
            reply = self._replies.get(item_id)
            if rid == response and reply is not None and reply.final is None:
                self.ctx.replies.restart(reply)
                self._reask = reply
                self._need_reply = True
                return
        self._need_reply = True  # the response had produced nothing yet: ask again

    async def _send(self, event: dict[str, Any], *, quiet: bool = False) -> None:
        """Send one client event; while the socket is down it is dropped (logged)."""
        conn = self._conn
        if conn is None:
            if not quiet:
                self.log.info("not connected: %s dropped", event.get("type"))
            return
        try:
            await conn.send_raw(json.dumps(event))
        except Exception as exc:  # the receive loop sees the drop and reconnects
            self.log.debug("send of %s failed: %s", event.get("type"), exc)

    def _eid(self) -> str:
        return f"evt_voicetui_{next(self._event_ids)}"

    # --- receiving -------------------------------------------------------------------------

    async def _receive(self, conn: AsyncRealtimeConnection) -> None:
        while True:
            try:
                event = await conn.recv()
            except json.JSONDecodeError as exc:
                self.log.warning("malformed frame from OpenAI skipped (%s)", exc.msg)
                continue
            await self._dispatch(event)

    async def _dispatch(self, event: Any) -> None:
        etype = str(getattr(event, "type", "") or "")
        handler = self._handlers.get(etype)
        if handler is not None:
            try:
                await handler(self, event)
            except (ProviderError, asyncio.CancelledError):
                raise
            except Exception:  # one odd event must not end the conversation
                self.log.exception("handling OpenAI event %r failed; skipped", etype)
        elif etype not in _IGNORED_EVENTS:
            self.log.info("ignoring unknown OpenAI event type %r", etype)

    async def _on_session_created(self, event: Any) -> None:
        session = getattr(event, "session", None)
        sid = getattr(session, "id", None)
        if sid:
            self.session_ids.append(str(sid))
        expires = getattr(session, "expires_at", None)
        self._expires_at = float(expires) if isinstance(expires, int | float) else None
        if self._rollover is None or self._rollover.done():
            self._watch_expiry()  # a renewed session: watch its own cap

    async def _on_session_updated(self, event: Any) -> None:
        return None

    async def _on_speech_started(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        if self._assistant_busy():
            if self.ctx.gate.allows_barge_in():
                self._server_cut = self._server_interrupts  # then the service cancelled it
                try:
                    await self.ctx.replies.cut("barge_in")
                finally:
                    self._server_cut = False
            elif not self._server_interrupts:
                # the gate needs a little more of the speech to tell it from echo: decide
                # on the next mic frames (see send_audio); the turn is shown once it is
                # the user's, never while it may still be echo
                self._barge_deadline = time.monotonic() + BARGE_DECISION_S
                self._barge_item = item_id
        self._turn_of_item.setdefault(item_id, item_id)
        self._user_speaking = True
        if self._barge_item != item_id:
            self.ctx.emit(UserSpeechStarted(turn_id=item_id))

    async def _on_speech_stopped(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        self._user_speaking = False
        if self._barge_deadline is not None:
            self._refuse_barge_in()
        if item_id in self._echo_items:
            return
        self.ctx.emit(UserSpeechStopped(turn_id=self._turn_of_item.get(item_id, item_id)))

    async def _on_committed(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        if item_id in self._echo_items:
            # out of the model's context, so no reply answers (or remembers) the echo
            await self._send({"type": "conversation.item.delete", "item_id": item_id})
            self._echo_committed = True
            return
        self._echo_committed = False
        if self._ptt and self._ptt_turn is not None:
            self._turn_of_item[item_id] = self._ptt_turn
        else:
            self._turn_of_item.setdefault(item_id, item_id)
            self._need_reply = True

    async def _on_transcription_delta(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        if item_id in self._echo_items:
            return
        delta = getattr(event, "delta", None)
        if not delta:
            return
        text = self._partials.get(item_id, "") + str(delta)
        self._partials[item_id] = text
        self.ctx.emit(UserTranscript(turn_id=self._turn(item_id), text=text.strip(), final=False))

    async def _on_transcription_segment(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        if item_id in self._echo_items:
            return
        index = self._segments.get(item_id, 0)
        self._segments[item_id] = index + 1
        start, end = getattr(event, "start", None), getattr(event, "end", None)
        text = str(getattr(event, "text", "") or "").strip()
        self.ctx.emit(
            UserTranscript(
                turn_id=self._turn(item_id),
                text=text,
                final=True,
                speaker=speaker_label(getattr(event, "speaker", None)),
                start=float(start) if start is not None else None,
                end=float(end) if end is not None else None,
                segment_index=index,
                relabel=index == 0 and item_id in self._plain_final,
            )
        )
        self._remember("user", f"{item_id}#{index}", text)

    async def _on_transcription_completed(self, event: Any) -> None:
        item_id = str(getattr(event, "item_id", "") or "")
        text = str(getattr(event, "transcript", "") or "").strip()
        self._partials.pop(item_id, None)
        if self._ptt and not self._talking and self._turn_of_item.get(item_id) == self._ptt_turn:
            self._turn_audio = []  # in the conversation history now: seeding covers it
        if item_id in self._echo_items:
            self.log.info("dropped echo turn %s: %r", item_id, text)  # still billed: usage below
        elif self._segments.get(item_id, 0) == 0:
            self._plain_final.add(item_id)
            self.ctx.emit(UserTranscript(turn_id=self._turn(item_id), text=text, final=True))
            self._remember("user", f"{item_id}#0", text)
        usage = getattr(event, "usage", None)
        if usage is not None:
            if getattr(usage, "type", None) == "duration":
                self.ctx.emit(
                    Usage(provider=SPEC_KEY, audio_seconds=float(usage.seconds or 0), requests=0)
                )
            else:
                self.ctx.emit(
                    Usage(
                        provider=SPEC_KEY,
                        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
                        requests=0,
                    )
                )

    async def _on_transcription_failed(self, event: Any) -> None:
        err = getattr(event, "error", None)
        message = str(getattr(err, "message", "") or "transcription failed")
        self.ctx.emit(
            ErrorEvent(
                message=f"could not transcribe what you said ({message})",
                code="transcription_failed",
            )
        )

    async def _on_response_created(self, event: Any) -> None:
        response = getattr(event, "response", None)
        rid = str(getattr(response, "id", "") or "")
        if self._echo_committed and not self._need_reply:
            # the service's VAD answers every commit (create_response): this answer is to
            # the echo, so it is stopped before a word of it plays
            self._echo_committed = False
            self._echo_responses.add(rid)
            self._cancelled_responses.add(rid)
            await self._send({"type": "response.cancel", "response_id": rid})
            return
        self._active_response = rid
        self._need_reply = False

    async def _on_output_item_added(self, event: Any) -> None:
        item = getattr(event, "item", None)
        item_id = getattr(item, "id", None)
        if getattr(item, "role", None) == "assistant" and item_id:
            rid = str(getattr(event, "response_id", "") or "")
            if rid in self._echo_responses:  # keep the model's context free of it too
                await self._send({"type": "conversation.item.delete", "item_id": str(item_id)})
                return
            self._reply(str(item_id), rid)

    async def _on_text_delta(self, event: Any) -> None:
        rid = str(getattr(event, "response_id", "") or "")
        delta = getattr(event, "delta", None)
        if rid in self._cancelled_responses or not delta:
            return
        reply = self._reply(str(getattr(event, "item_id", "") or ""), rid)
        self.ctx.replies.say(reply, str(delta))

    async def _on_transcript_done(self, event: Any) -> None:
        return None  # the deltas already carried the whole text

    async def _on_audio_delta(self, event: Any) -> None:
        rid = str(getattr(event, "response_id", "") or "")
        delta = getattr(event, "delta", None)
        if rid in self._cancelled_responses or not delta:
            return  # late audio of a reply the user already cut
        reply = self._reply(str(getattr(event, "item_id", "") or ""), rid)
        pcm = np.frombuffer(base64.b64decode(delta), dtype="<i2")
        self.ctx.replies.audio(reply, pcm)

    async def _on_response_done(self, event: Any) -> None:
        response = getattr(event, "response", None)
        rid = str(getattr(response, "id", "") or "")
        status = str(getattr(response, "status", "") or "completed")
        if self._active_response == rid:
            self._active_response = None
        known = ("completed", "cancelled", "failed", "incomplete")
        outcome = status if status in known else "failed"
        if rid in self._cancelled_responses and outcome == "completed":
            outcome = "cancelled"
        samples = 0
        replies = [self._replies[item] for item, r in self._response_of.items() if r == rid]
        for reply in replies:
            samples += reply.samples
            self.ctx.replies.generated(reply, outcome)  # type: ignore[arg-type]
        if rid in self._echo_responses:
            pass  # never shown: the reply playing now is still the one in progress
        elif not replies:  # nothing was said (failed, or cancelled before any output)
            self.ctx.emit(AssistantDone(turn_id=rid, status=outcome))  # type: ignore[arg-type]
        if status == "failed":
            details = getattr(response, "status_details", None)
            err = getattr(details, "error", None)
            message = str(getattr(err, "message", "") or "the reply failed")
            self.ctx.emit(ErrorEvent(message=f"OpenAI: {message}", code="response_failed"))
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.ctx.emit(
                Usage(
                    provider=SPEC_KEY,
                    input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                    output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
                    audio_seconds=round(samples / ENGINE_RATE, 3),  # assistant audio received
                    requests=1,
                )
            )

    async def _on_rate_limits(self, event: Any) -> None:
        limits: dict[str, dict[str, float]] = {}
        for limit in getattr(event, "rate_limits", None) or []:
            name = getattr(limit, "name", None)
            if not name:
                continue
            limits[str(name)] = {
                key: float(value)
                for key in ("limit", "remaining", "reset_seconds")
                if (value := getattr(limit, key, None)) is not None
            }
        if limits:
            self.ctx.emit(Usage(provider=SPEC_KEY, requests=0, rate_limits=limits))

    async def _on_truncated(self, event: Any) -> None:
        self.log.debug(
            "truncated %s at %s ms",
            getattr(event, "item_id", "?"),
            getattr(event, "audio_end_ms", "?"),
        )

    async def _on_error(self, event: Any) -> None:
        err = getattr(event, "error", None)
        code = str(getattr(err, "code", "") or "")
        message = " ".join(str(getattr(err, "message", "") or "unknown error").split())
        if code in _QUIET_ERRORS:
            self.log.debug("ignored OpenAI error %s: %s", code, message)
            return
        if code == "session_expired":
            self._expired = True
            self.log.info("OpenAI session expired; rolling over to a new one")
            return
        self.log.warning("OpenAI error %s: %s", code or "?", message)
        if code == "input_audio_buffer_commit_empty":
            self._need_reply = False
            self.ctx.emit(
                ErrorEvent(message="that turn was too short to send", code="turn_too_short")
            )
            turn = self._ptt_turn or "turn"
            self.ctx.emit(AssistantDone(turn_id=turn, status="cancelled"))  # no reply is coming
            return
        self.ctx.emit(ErrorEvent(message=f"OpenAI: {message}", code=code or "protocol"))

    _handlers: dict[str, Any] = {
        "session.created": _on_session_created,
        "session.updated": _on_session_updated,
        "input_audio_buffer.speech_started": _on_speech_started,
        "input_audio_buffer.speech_stopped": _on_speech_stopped,
        "input_audio_buffer.committed": _on_committed,
        "conversation.item.input_audio_transcription.delta": _on_transcription_delta,
        "conversation.item.input_audio_transcription.segment": _on_transcription_segment,
        "conversation.item.input_audio_transcription.completed": _on_transcription_completed,
        "conversation.item.input_audio_transcription.failed": _on_transcription_failed,
        "conversation.item.truncated": _on_truncated,
        "response.created": _on_response_created,
        "response.output_item.added": _on_output_item_added,
        "response.output_audio_transcript.delta": _on_text_delta,
        "response.output_text.delta": _on_text_delta,
        "response.output_audio_transcript.done": _on_transcript_done,
        "response.output_text.done": _on_transcript_done,
        "response.output_audio.delta": _on_audio_delta,
        "response.done": _on_response_done,
        "rate_limits.updated": _on_rate_limits,
        "error": _on_error,
    }

    # --- assistant lines --------------------------------------------------------------------

    def _reply(self, item_id: str, response_id: str) -> Reply:
        reply = self._replies.get(item_id)
        if reply is None:
            reask, self._reask = self._reask, None
            reply = reask or self.ctx.replies.open(item_id)
            self._replies[item_id] = reply
            self._item_of[reply.id] = item_id
            self._response_of[item_id] = response_id
        return reply

    def _turn(self, item_id: str) -> str:
        return self._turn_of_item.get(item_id, item_id)

    def _assistant_busy(self) -> bool:
        return self._active_response is not None or self.ctx.replies.busy()

    def _on_reply_final(self, reply: Reply) -> None:
        """The ledger made a line final: that is what the conversation history holds."""
        if reply.final is not None and reply.id in self._item_of:
            self._remember("assistant", reply.id, reply.final.text)

    def _remember(self, role: str, key: str, text: str) -> None:
        for entry in self._history:
            if entry[0] == role and entry[1] == key:
                entry[2] = text
                return
        self._history.append([role, key, text])


def _close_reason(exc: BaseException) -> str:
    code = getattr(getattr(exc, "rcvd", None), "code", None)
    if code is not None:
        return f"connection closed ({code})"
    return str(exc) or type(exc).__name__


class OpenAIRealtimeProvider:
    """The ``PROVIDER`` of this module. Reconnect timing is injectable (tests run fast)."""

    spec_key = SPEC_KEY
    preference = 10
    distributions = ("openai",)

    def __init__(
        self,
        *,
        reconnect_base_delay_s: float = 1.0,
        max_reconnect_attempts: int = 5,
        connect_timeout_s: float = 15.0,
        rollover_margin_s: float = 30.0,
        reconnects_per_minute: int = 5,
        seed_budget_chars: int = 24_000,
    ) -> None:
        self.reconnect_base_delay_s = reconnect_base_delay_s
        self.reconnects_per_minute = reconnects_per_minute
        self.rollover_margin_s = rollover_margin_s
        self.max_reconnect_attempts = max_reconnect_attempts
        self.connect_timeout_s = connect_timeout_s
        # conversation text replayed into a renewed session (~6k tokens of the 32k context);
        # beyond it the oldest part is condensed (voicetui.engine.rollover.seed_messages)
        self.seed_budget_chars = seed_budget_chars

    @property
    def source(self) -> SpecSource:
        return SOURCE

    @property
    def options(self) -> Mapping[str, ProviderOption]:
        return OPTIONS

    def create_session(self, ctx: SessionContext) -> OpenAIRealtimeSession:
        return OpenAIRealtimeSession(ctx, self)

    def preload(self) -> None:
        """Import the SDK and its realtime client (see :meth:`Provider.preload`)."""
        import_quietly("openai", "openai.resources.realtime.realtime")

    async def list_voices(self, settings: ProviderSettings, api_key: str) -> list[Voice]:
        """The built-in voices (the Realtime API has no voice listing)."""
        return [Voice(id=v, name=v.capitalize(), languages=("multilingual",)) for v in VOICES]

    async def probe(self, base_url: str, api_key: str, timeout_ms: int) -> str:
        """List models (``GET /v1/models``) with the configured key, SDK retries off."""
        from voicetui.providers.openai.probe import list_models

        return await list_models(base_url, api_key, timeout_ms, SOURCE.alias)

    async def inventory(self, base_url: str, api_key: str, timeout_ms: int, voice: str) -> Listing:
        """What the account offers (health checks the configured model and voice with it)."""
        from voicetui.providers.openai.probe import inventory

        return await inventory(base_url, api_key, timeout_ms, SOURCE.alias)


__all__ = ["OpenAIRealtimeProvider", "OpenAIRealtimeSession"]
