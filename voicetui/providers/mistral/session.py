"""The Mistral streaming cascade as one :class:`~voicetui.providers.base.ProviderSession`.

Every stage streams so the assistant starts speaking as early as the wire allows::

    mic ─► realtime STT socket ─► final text ─► agent conversation stream ─► chunker ─► TTS
            (live partials)          │           (deltas shown as they come)      (first clause,
                                     └─► batch diarization (concurrent) ─► relabel   then sentences)

* **Listening** — one transcription socket per conversation (:mod:`.listening`).
  push_to_talk: audio between start/stop, ``flush`` on stop. server_vad: the socket's
  ``turn.*`` events; when the service does not end a turn (real Voxtral often doesn't), the
  local VAD does and we ``flush``.
* **Speaker labels** — the turn's audio goes to batch transcription with ``diarize=True``
  concurrently with the reply (:mod:`.diarize`); the user line is relabelled when it lands.
* **Agent** — created once, id cached (:mod:`.agent`); first turn ``start_stream``, later
  turns ``append_stream`` on the same conversation id.
* **Speaking** — pieces from :mod:`.chunker` go to :mod:`.speech` as they are cut; a speech
  socket is opened while the user is still talking so its handshake costs nothing later.
* **Replies** go through the engine's reply ledger (``ctx.replies``): each TTS piece is the
  text its audio speaks, confirmed piece by piece, so what was heard at a cut is the words
  in the played audio.
* **Barge-in** — user speech while the reply is audible (and the duplex gate agrees) asks
  the ledger to cut; :meth:`MistralSession.cancel` then stops the LLM and TTS streams, and
  the next turn tells the agent what the user actually heard (the conversation on the
  service holds the whole reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, Float32Array, Int16Array
from voicetui.engine.events import (
    AssistantDone,
    ErrorEvent,
    Event,
    Reconnected,
    Reconnecting,
    SessionWarning,
    ToolActivity,
    Usage,
    UserSpeechStarted,
    UserSpeechStopped,
    UserTranscript,
)
from voicetui.engine.replies import Reply
from voicetui.engine.tasks import cancel_and_wait
from voicetui.providers.base import ProviderError, SessionContext
from voicetui.providers.mistral.agent import AgentManager
from voicetui.providers.mistral.catalog import CATALOG
from voicetui.providers.mistral.chunker import TextChunker
from voicetui.providers.mistral.diarize import diarize
from voicetui.providers.mistral.listening import Listener, ListenOptions
from voicetui.providers.mistral.retry import RetryPolicy, call_with_retries, classify
from voicetui.providers.mistral.speech import (
    SpeechOptions,
    SpeechPipeline,
    WarmSocket,
    open_realtime_speech,
)

if TYPE_CHECKING:
    from mistralai.client import Mistral

DEFAULT_TRANSCRIPTION_MODEL = CATALOG.defaults["transcriptionModel"]
DEFAULT_DIARIZE_MODEL = CATALOG.defaults["diarizeModel"]
DEFAULT_TTS_MODEL = CATALOG.defaults["ttsModel"]
DEFAULT_VOICE = CATALOG.defaults["defaultVoice"]
_FALLBACK_LOGGED: set[str] = set()  # models already reported as "no server turn detection"
T = TypeVar("T")

DIARIZE_HOLD_S = 2.0  # longest the diarization upload waits for the agent request
MIN_TURN_SAMPLES = ENGINE_RATE // 10  # never commit less than 100 ms of audio
PREROLL_S = 0.3  # audio kept from before speech starts, for the diarization clip
FINAL_QUIET_S = 0.6  # no `done` after a flush: deltas quiet this long make the final text
FINAL_TIMEOUT_S = 8.0
SERVER_END_GRACE_S = 0.7  # local VAD says "ended"; the server gets this long to agree
WARM_SOCKET_MAX_AGE_S = 20.0
TOOL_LABELS = {"web_search": "searching the web…", "web_search_premium": "searching the web…"}


@dataclass(eq=False)
class _UserTurn:
    id: str
    audio: list[Int16Array] = field(default_factory=list)
    committed: str = ""  # text of utterances the service closed while the key was still down
    partial: str = ""
    final: str | None = None
    ended: bool = False
    ended_at: float | None = None
    ignored: bool = False  # started while the assistant was audible and barge-in was refused
    server_owned: bool = False  # the service reported turn.start for it
    last_delta_at: float = 0.0
    got_final: asyncio.Event = field(default_factory=asyncio.Event)
    final_emitted: asyncio.Event = field(default_factory=asyncio.Event)
    # set once the reply's agent request is on the wire (or there will be none): the
    # diarization upload waits for it so it never competes with the critical path
    reply_sent: asyncio.Event = field(default_factory=asyncio.Event)
    stream_segments: int = 0  # speaker-labelled segments seen in-stream (push-to-talk)

    @property
    def samples(self) -> int:
        return sum(len(a) for a in self.audio)

    @property
    def text(self) -> str:
        """Everything heard so far in this turn."""
        return f"{self.committed} {self.partial}".strip()


@dataclass(eq=False)
class _Reply:
    id: str
    user_turn_id: str
    line: Reply  # the engine ledger's entry: text, audio, what was heard, the final line
    task: asyncio.Task[None] | None = None
    speech: SpeechPipeline | None = None
    text: str = ""
    generating: bool = True
    interrupted: bool = False
    marks: dict[str, float] = field(default_factory=dict)  # monotonic stamps (latency logs)


class MistralSession:
    """One conversation with the Mistral cascade (see the module docstring)."""

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.log = ctx.log
        extras = self.settings.extras
        self.server_vad = self.settings.turn_detection == "server_vad"
        self.transcription_model = str(
            extras.get("transcriptionModel") or DEFAULT_TRANSCRIPTION_MODEL
        )
        self.diarize_model = str(extras.get("diarizeModel") or DEFAULT_DIARIZE_MODEL)
        self.tts_model = str(extras.get("ttsModel") or DEFAULT_TTS_MODEL)
        self.diarize_enabled = bool(extras.get("diarize", True))
        voice = self.settings.voice
        # never a null voice: every documented speech call passes one ("default" is the
        # seed spec's placeholder, not a Mistral voice)
        self.voice: str = DEFAULT_VOICE if not voice or voice == "default" else voice
        self.realtime_tts = bool(extras.get("realtimeSpeech", True))
        stt = CATALOG.find(self.transcription_model)
        # server_vad asks the service for turn detection only where the model has it; the
        # local VAD ends turns otherwise (and with serverTurnDetection=false, a test seam)
        self.server_turn_detection = bool(extras.get("serverTurnDetection", True)) and (
            stt is not None and stt.has("turn_detection")
        )
        # the service refuses diarization together with turn detection: speaker labels come
        # in-stream only in push-to-talk, from the batch relabel otherwise
        self.stream_diarize = (
            not self.server_vad
            and self.diarize_enabled
            and stt is not None
            and stt.has("diarization")
        )
        self.policy = RetryPolicy()
        self.client: Mistral | None = None
        self.agents: AgentManager | None = None
        self.listener: Listener | None = None
        self.conversation_id: str | None = None
        self._turn: _UserTurn | None = None  # open (collecting audio)
        self._awaiting: deque[_UserTurn] = deque()  # ended, waiting for their final text
        self._reply: _Reply | None = None
        self._reply_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._warm: WarmSocket | None = None
        self._preroll: deque[Int16Array] = deque()
        self._preroll_samples = 0
        self._server_turns = False  # the service does turn detection (saw turn.*)
        self._local_end_task: asyncio.Task[None] | None = None
        self._vad: Any = None
        self._detector: Any = None
        self._fatal: ProviderError | None = None
        self._heard_note: str | None = None  # a cut reply's heard part, for the next turn
        self._closed = False
        self._stopped = asyncio.Event()

    # -- helpers ----------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        try:
            self.ctx.emit(event)
        except Exception:  # a listener's bug must not kill the provider
            self.log.exception("event listener failed on %s", event.kind)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.error("background task %s failed: %r", task.get_name(), exc)

    def _fail(self, err: ProviderError) -> None:
        """A fatal error from a background task: end ``run()`` with it."""
        if self._fatal is None:
            self._fatal = err
        self._stopped.set()

    def _new_id(self, prefix: str) -> str:
        return self.ctx.new_turn_id(prefix)

    @property
    def _client(self) -> Mistral:
        if self.client is None:
            raise ProviderError("the Mistral session is not connected", code="protocol")
        return self.client

    # -- ProviderSession ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Create the client, find or create the agent and open the transcription socket."""
        # importing the SDK and first touching its sub-clients costs ~1 s: not on the loop
        # the key is read per request, so one refreshed by ctx.refresh_key (a rotated
        # managed key) reaches every socket and REST call made after it
        ctx = self.ctx
        self.client = await asyncio.to_thread(
            build_client, lambda: ctx.api_key, self.settings.base_url or None
        )
        self.agents = AgentManager(
            self.client, self.settings, self.ctx.state_dir, log=self.log, policy=self.policy
        )
        self.listener = Listener(
            self.client,
            ListenOptions(
                model=self.transcription_model,
                server_vad=self.server_vad and self.server_turn_detection,
                diarize=self.stream_diarize,
            ),
            on_event=self._on_stt_event,
            on_reconnecting=self._on_reconnecting,
            on_reconnected=self._on_reconnected,
            on_key_rejected=self.ctx.refresh_key,
            log=self.log,
        )
        fallback = self.server_vad and not self.server_turn_detection
        if fallback and self.transcription_model not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(self.transcription_model)  # said once per model, not per turn
            self.log.info(
                "transcription model %s has no server turn detection: the local VAD ends turns",
                self.transcription_model,
            )
        # agent lookup and socket handshake are independent: do them at once
        results = await asyncio.gather(
            self.agents.ensure(verify=True), self.listener.open(), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                await self.close()
                raise classify(result, what="connecting")
        if self.server_vad:
            self._warm_tts()

    async def run(self) -> None:
        """Receive loop of the transcription socket; returns when closed."""
        if self.listener is None:
            raise ProviderError("the Mistral session is not connected", code="protocol")
        listen = asyncio.create_task(self.listener.run(), name="mistral-listen")
        stopped = asyncio.create_task(self._stopped.wait(), name="mistral-stopped")
        try:
            await asyncio.wait({listen, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            self.listener.mark_closing()
            await cancel_and_wait(listen)
        if self._fatal is not None:
            raise self._fatal
        if listen.done() and not listen.cancelled():
            exc = listen.exception()
            if exc is not None:
                raise classify(exc, what="listening")

    async def send_audio(self, frame: CaptureFrame) -> None:
        """A 24 kHz int16 mic frame: to the socket, the turn's clip and the local VAD."""
        if self._closed or self.listener is None:
            return
        pcm = frame.pcm
        if not self.server_vad:
            turn = self._turn
            if turn is None:
                return
            turn.audio.append(pcm.copy())
            await self.listener.send(pcm.astype("<i2", copy=False).tobytes())
            return
        await self.listener.send(pcm.astype("<i2", copy=False).tobytes())
        turn = self._turn
        if turn is not None:
            turn.audio.append(pcm.copy())
        else:
            self._keep_preroll(pcm)
        if not self.server_turn_detection:  # the service ends turns itself otherwise
            await self._local_vad(frame)

    async def start_user_turn(self) -> None:
        """Talk key pressed: interrupt the assistant if audible and open a user turn."""
        if self._closed:
            return
        if self._reply_active():
            await self._interrupt_reply("user_key")
        if self._turn is None:
            self._begin_turn()

    async def end_user_turn(self) -> None:
        """Talk key released: flush the socket; the final text starts the reply."""
        turn = self._turn
        if turn is None or self.listener is None:
            return
        missing = MIN_TURN_SAMPLES - turn.samples
        if missing > 0:  # pad a tap of the key to the 100 ms minimum
            pad = np.zeros(missing, dtype=np.int16)
            turn.audio.append(pad)
            await self.listener.send(pad.tobytes())
        await self._end_turn(turn, flush=True)

    async def interrupt(self) -> None:
        """Interrupt key: stop the reply now."""
        await self._interrupt_reply("user_key")

    async def renew(self) -> str:
        """Session rollover (the engine calls it between turns, before the session limit):
        a new realtime transcription socket replaces the old one; the agent conversation
        continues under the same ``conversation_id``, which keeps the history on the
        service, so there is nothing to replay."""
        if self._closed or self.listener is None:
            raise ProviderError("the Mistral session is not connected", code="protocol")
        await self.listener.renew()
        self.log.info("transcription socket renewed; conversation %s", self.conversation_id)
        return "conversation"

    async def close(self) -> None:
        """Cancel the reply, let pending relabels land (briefly), close the sockets."""
        if self._closed:
            return
        self._closed = True
        reply = self._reply
        if reply is not None and reply.task is not None and not reply.task.done():
            await cancel_and_wait(reply.task)
        pending = [
            t for t in self._tasks if not t.done() and t.get_name().startswith("mistral-diarize")
        ]
        if pending:  # speaker labels are part of the transcript: give them a moment
            await asyncio.wait(pending, timeout=3.0)
        for task in list(self._tasks):
            await cancel_and_wait(task)
        if self._local_end_task is not None:
            self._local_end_task.cancel()
        if self._warm is not None:
            await self._warm.discard()
            self._warm = None
        if self.listener is not None:
            await self.listener.close()
        self._stopped.set()
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

    # -- turns ----------------------------------------------------------------------------

    def _keep_preroll(self, pcm: Int16Array) -> None:
        self._preroll.append(pcm.copy())
        self._preroll_samples += len(pcm)
        while (
            self._preroll
            and self._preroll_samples - len(self._preroll[0]) >= PREROLL_S * ENGINE_RATE
        ):
            self._preroll_samples -= len(self._preroll.popleft())

    def _begin_turn(self, *, ignored: bool = False) -> _UserTurn:
        turn = _UserTurn(id=self._new_id("u"), ignored=ignored)
        if self.server_vad:
            turn.audio.extend(self._preroll)
        self._preroll.clear()
        self._preroll_samples = 0
        self._turn = turn
        if not ignored:
            self._emit(UserSpeechStarted(turn_id=turn.id))
            self._warm_tts()
        return turn

    async def _user_speech_started(self, *, server: bool) -> None:
        """server_vad: speech began (turn.start or the local VAD)."""
        if server:
            self._server_turns = True
        turn = self._turn
        if turn is not None:
            turn.server_owned = turn.server_owned or server
            return
        ignored = False
        if self._reply_active():
            if self._audible() and not self.ctx.gate.allows_barge_in():
                ignored = True  # most likely our own voice coming back through the mic
                self.log.info("speech during playback not loud enough over the echo: ignored")
                self._emit(
                    SessionWarning(
                        code="barge_in_refused",
                        message="speech during the reply was not louder than the echo",
                    )
                )
            else:
                await self._interrupt_reply("barge_in")
        turn = self._begin_turn(ignored=ignored)
        turn.server_owned = server

    async def _end_turn(self, turn: _UserTurn, *, flush: bool) -> None:
        if turn.ended:
            return
        turn.ended = True
        turn.ended_at = time.monotonic()
        if self._turn is turn:
            self._turn = None
        if self._local_end_task is not None and self._local_end_task is not asyncio.current_task():
            self._local_end_task.cancel()
            self._local_end_task = None
        self._awaiting.append(turn)
        if not turn.ignored:
            self._emit(UserSpeechStopped(turn_id=turn.id))
        if flush and self.listener is not None:
            await self.listener.flush()
        if not turn.ignored and self.diarize_enabled and turn.audio and not self.stream_diarize:
            self._spawn(self._relabel(turn), name=f"mistral-diarize-{turn.id}")
        self._spawn(self._complete_turn(turn), name=f"mistral-turn-{turn.id}")

    async def _local_vad(self, frame: CaptureFrame) -> None:
        """server_vad fallback: the service may never end a turn; the local VAD does."""
        if self._detector is None:
            from voicetui.audio.vad import LocalTurnDetector, Vad

            self._vad = Vad()
            self._detector = LocalTurnDetector(end_silence_ms=500.0)
        speech = frame.speech
        if speech is None:
            speech = self._vad.classify_block(frame.pcm, frame.rms_dbfs)
        event = self._detector.update_raw(bool(speech), frame.duration_ms)
        if event is None:
            return
        if event.value == "speech_started":
            if not self._server_turns:  # when the service detects turns, its turn.start rules
                await self._user_speech_started(server=False)
        elif event.value == "speech_stopped":
            turn = self._turn
            if turn is None:
                return
            if self._server_turns:  # the service ends turns itself: let it, within a grace
                self._local_end_task = asyncio.create_task(self._local_end_after_grace(turn))
            else:
                await self._end_turn(turn, flush=True)

    async def _local_end_after_grace(self, turn: _UserTurn) -> None:
        await asyncio.sleep(SERVER_END_GRACE_S)
        if not turn.ended:
            self.log.info("no turn.end from the service; ending the turn locally")
            await self._end_turn(turn, flush=True)

    def _stt_target(self) -> _UserTurn | None:
        for turn in self._awaiting:
            if turn.final is None:
                return turn
        return self._turn

    async def _on_stt_event(self, event: Any) -> None:
        """Dispatch one realtime transcription event (isinstance, never the name alone)."""
        from mistralai.client import models
        from mistralai.extra.realtime import UnknownRealtimeEvent

        if isinstance(event, models.TranscriptionStreamTextDelta):
            turn = self._stt_target()
            if turn is None and self.server_vad:
                turn = self._begin_turn()
            if turn is None:
                return
            turn.partial += event.text
            turn.last_delta_at = time.monotonic()
            if not turn.ignored:
                self._emit(UserTranscript(turn_id=turn.id, text=turn.text, final=False))
        elif isinstance(event, models.TranscriptionStreamDone):
            turn = self._stt_target()
            if turn is None:
                return
            heard = (event.text or turn.partial).strip()
            if not turn.ended and not self.server_vad:
                # the service closed an utterance while the talk key is still down: keep it
                # and go on listening; the turn ends when the key is released
                turn.committed = f"{turn.committed} {heard}".strip()
                turn.partial = ""
                return
            if not turn.ended:  # server VAD: the service closed the utterance itself
                await self._end_turn(turn, flush=False)
            turn.final = f"{turn.committed} {heard}".strip()
            turn.got_final.set()
        elif isinstance(event, models.TranscriptionStreamSegmentDelta):
            turn = self._stt_target()
            if self.stream_diarize and turn is not None and not turn.ignored:
                index, turn.stream_segments = turn.stream_segments, turn.stream_segments + 1
                self._spawn(self._stream_label(turn, event, index), name=f"mistral-label-{turn.id}")
        elif isinstance(event, models.TurnDetectionStartEvent):
            if self.server_vad:
                await self._user_speech_started(server=True)
        elif isinstance(event, models.TurnDetectionEagerEndEvent):
            self._warm_tts()  # the reply is probably near: have a speech socket ready
        elif isinstance(event, models.TurnDetectionEndEvent):
            self._server_turns = True
            turn = self._turn
            if self.server_vad and turn is not None:
                await self._end_turn(turn, flush=False)  # its `done` follows
        elif isinstance(event, models.RealtimeTranscriptionError):
            self.log.warning("transcription error event: %s", event.error)
            self._emit(
                ErrorEvent(
                    message=f"Mistral transcription error: {event.error.message}", code="protocol"
                )
            )
        elif isinstance(event, UnknownRealtimeEvent):
            self.log.info("ignored transcription event %r (%s)", event.type, event.error)
        # session.created/updated, language, segment, resume: nothing to do

    async def _complete_turn(self, turn: _UserTurn) -> None:
        """Wait for the turn's final text, show it, and start the reply."""
        deadline = time.monotonic() + FINAL_TIMEOUT_S
        while not turn.got_final.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            quiet_since = max(turn.last_delta_at, turn.ended_at or now)
            if turn.text and now - quiet_since >= FINAL_QUIET_S:
                break  # deltas but no `done`: take what we have
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.got_final.wait(), timeout=0.05)
        if turn.final is None:
            turn.final = turn.text
        with contextlib.suppress(ValueError):
            self._awaiting.remove(turn)
        text = turn.final
        if turn.ignored or not text:
            turn.reply_sent.set()
        if turn.ignored:
            self.log.info("dropped echo turn %s: %r", turn.id, text)
            return
        self._emit(UserTranscript(turn_id=turn.id, text=text, final=True))
        turn.final_emitted.set()
        if turn.samples:
            self._emit(
                Usage(provider=self.settings.spec_key, audio_seconds=turn.samples / ENGINE_RATE)
            )
        if not text:
            self.log.info("turn %s had no words; no reply", turn.id)
            # the engine waits for a reply after UserSpeechStopped: say there will be none
            self._emit(AssistantDone(turn_id=f"{turn.id}-none", status="incomplete"))
            return
        await self._start_reply(turn, text)

    async def _stream_label(self, turn: _UserTurn, seg: Any, index: int) -> None:
        """An in-stream speaker-labelled segment relabels the turn's line once it is shown."""
        await turn.final_emitted.wait()
        speaker = seg.speaker_id if isinstance(seg.speaker_id, str) else None
        self._emit(
            UserTranscript(
                turn_id=turn.id,
                text=seg.text,
                final=True,
                speaker=speaker,
                start=seg.start,
                end=seg.end,
                segment_index=index,
                relabel=True,
            )
        )

    async def _relabel(self, turn: _UserTurn) -> None:
        """Diarize the turn's clip (concurrently with the reply) and relabel its lines."""
        pcm = np.concatenate(turn.audio) if turn.audio else np.zeros(0, np.int16)
        with contextlib.suppress(TimeoutError):  # start once the agent request is out
            await asyncio.wait_for(turn.reply_sent.wait(), timeout=DIARIZE_HOLD_S)
        try:
            result = await diarize(self._client, pcm, model=self.diarize_model, log=self.log)
        except ProviderError as err:
            self.log.warning("speaker labels unavailable for %s: %s", turn.id, err)
            self._emit(SessionWarning(message=f"speaker labels unavailable: {err}", code="diarize"))
            return
        await turn.final_emitted.wait()  # a relabel must come after the line it replaces
        for index, seg in enumerate(result.segments):
            self._emit(
                UserTranscript(
                    turn_id=turn.id,
                    text=seg.text,
                    final=True,
                    speaker=seg.speaker,
                    start=seg.start,
                    end=seg.end,
                    segment_index=index,
                    relabel=True,
                )
            )
        self._emit(
            Usage(
                provider=self.settings.spec_key,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                audio_seconds=result.audio_seconds,
            )
        )

    # -- replies ----------------------------------------------------------------------------

    def _reply_active(self) -> bool:
        return self.ctx.replies.busy()

    def _audible(self) -> bool:
        return self.ctx.replies.audible()

    def _warm_tts(self) -> None:
        """Open a speech socket ahead of the reply (its handshake is then off the path)."""
        if not self.realtime_tts or self.client is None or self._closed:
            return
        warm = self._warm
        if warm is not None:
            stale = time.monotonic() - warm.opened_at > WARM_SOCKET_MAX_AGE_S
            broken = warm.task.done() and (
                warm.task.cancelled() or warm.task.exception() is not None
            )
            if not stale and not broken:
                return
            self._spawn(warm.discard(), name="mistral-warm-discard")
        task = asyncio.create_task(
            open_realtime_speech(
                self.client, model=self.tts_model, voice=self.voice, timeout_ms=10_000
            ),
            name="mistral-warm-tts",
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "never retrieved"
        self._warm = WarmSocket(task)

    def _take_warm(self) -> WarmSocket | None:
        warm, self._warm = self._warm, None
        if warm is not None and time.monotonic() - warm.opened_at > WARM_SOCKET_MAX_AGE_S:
            self._spawn(warm.discard(), name="mistral-warm-discard")
            return None
        return warm

    async def _start_reply(self, turn: _UserTurn, text: str) -> None:
        async with self._reply_lock:
            previous = self._reply
            if previous is not None and previous.task is not None and not previous.task.done():
                # a new turn while the previous reply is still generating (no barge-in
                # happened, e.g. push-to-talk without audio yet): finish that one first
                await asyncio.wait({previous.task})
            if self._closed:
                return
            rid = self._new_id("a")
            reply = _Reply(
                id=rid, user_turn_id=turn.id, line=self.ctx.replies.open(rid, turn_id=turn.id)
            )
            self._reply = reply
            reply.task = self._spawn(
                self._run_reply(reply, turn, text), name=f"mistral-reply-{reply.id}"
            )

    def _play(self, reply: _Reply, pcm: Float32Array) -> None:
        if reply.interrupted or self._closed:
            return
        self.ctx.replies.audio(reply.line, pcm)

    def _realtime_tts_unavailable(self, reason: str) -> None:
        if self.realtime_tts:
            self.realtime_tts = False  # do not pay a failed handshake on every reply
            self._emit(
                SessionWarning(
                    message=f"realtime speech unavailable, using REST per sentence ({reason})",
                    code="tts_fallback",
                )
            )

    async def _open_agent_stream(self, text: str) -> Any:
        """``start_stream`` (first turn) or ``append_stream``, with retries; recreates a
        vanished agent and starts afresh when the conversation is gone."""
        client = self._client
        agents = self.agents
        assert agents is not None

        note, self._heard_note = self._heard_note, None
        if note is not None:
            # the service's conversation holds the whole of the cut reply; tell the agent
            # what the user actually heard before they spoke
            text = f'(You were interrupted. The user heard only: "{note}")\n{text}'

        async def op() -> Any:
            if self.conversation_id is not None:
                return await client.beta.conversations.append_stream_async(
                    conversation_id=self.conversation_id, inputs=text, timeout_ms=60_000
                )
            agent_id = await agents.ensure()
            return await client.beta.conversations.start_stream_async(
                agent_id=agent_id, inputs=text, timeout_ms=60_000
            )

        try:
            return await self._with_fresh_key(
                lambda: call_with_retries(
                    op, what="asking the agent", policy=self.policy, log=self.log
                )
            )
        except ProviderError as err:
            if err.code != "not_found":
                raise
            if self.conversation_id is not None:
                self.log.warning(
                    "conversation %s is gone; starting a new one", self.conversation_id
                )
                self._emit(
                    SessionWarning(
                        message="the conversation expired; starting a new one", code="conversation"
                    )
                )
                self.conversation_id = None
            else:
                await agents.recreate(agents.agent_id)
            return await call_with_retries(
                op, what="asking the agent", policy=self.policy, log=self.log
            )

    async def _run_reply(self, reply: _Reply, turn: _UserTurn, text: str) -> None:
        from mistralai.client import models

        speech = SpeechPipeline(
            self._client,
            SpeechOptions(
                model=self.tts_model,
                voice=self.voice,
                prefer_realtime=self.realtime_tts,
                policy=self.policy,
            ),
            on_audio=lambda pcm: self._play(reply, pcm),
            log=self.log,
            warm=self._take_warm(),
            on_realtime_unavailable=self._realtime_tts_unavailable,
            on_piece_done=lambda every: self.ctx.replies.piece_done(reply.line, every=every),
        )
        reply.speech = speech

        def say(piece: str) -> None:
            self.ctx.replies.speak(reply.line, piece + " ", own_audio=True)
            speech.say(piece)

        chunker = TextChunker()
        status: Literal["completed", "failed"] = "completed"
        finished = False  # the stream said the response is done

        def add_text(delta: str) -> None:
            reply.text += delta
            self.ctx.replies.show(reply.line, delta)
            for piece in chunker.feed(delta):
                say(piece)

        try:
            try:
                reply.marks["agent request"] = time.monotonic()
                try:
                    stream = await self._open_agent_stream(text)
                finally:
                    turn.reply_sent.set()
                reply.marks["agent stream open"] = time.monotonic()
                async with stream:
                    async for event in stream:
                        data = event.data
                        if isinstance(data, models.MessageOutputEvent):
                            delta = _text_of(data.content)
                            if not delta:
                                continue
                            if not reply.text:
                                reply.marks["first token"] = time.monotonic()
                            add_text(delta)
                        elif isinstance(data, models.ResponseStartedEvent):
                            self.conversation_id = data.conversation_id
                        elif isinstance(data, models.ToolExecutionStartedEvent):
                            self._emit(_tool_activity(reply.id, data.name, "started"))
                        elif isinstance(data, models.ToolExecutionDoneEvent):
                            self._emit(_tool_activity(reply.id, data.name, "done"))
                        elif isinstance(data, models.ResponseDoneEvent):
                            finished = True
                            usage = data.usage
                            self._emit(
                                Usage(
                                    provider=self.settings.spec_key,
                                    input_tokens=int(usage.prompt_tokens or 0),
                                    output_tokens=int(usage.completion_tokens or 0),
                                )
                            )
                        elif isinstance(data, models.ResponseErrorEvent):
                            raise ProviderError(
                                f"the Mistral agent failed: {data.message} (code {data.code})",
                                code="server",
                            )
                        elif type(data).__name__.startswith("Unknown"):
                            self.log.info(
                                "ignored conversation event %r", getattr(data, "raw", data)
                            )
            except ProviderError:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream broke mid-reply (a drop, a malformed frame)
                err = classify(exc, what="receiving the reply")
                if err.code == "key_rejected":
                    raise err from exc
                self.log.warning("agent stream broke: %s", err)
                rest = await self._rest_of_reply(reply.text)
                if rest is None:
                    self._emit(ErrorEvent(message=f"the reply was cut off: {err}", code=err.code))
                    status = "failed"
                else:
                    add_text(rest)
            else:
                if not finished:  # the stream ended early without saying the reply is done
                    self.log.warning("agent stream ended before the reply was done")
                    rest = await self._rest_of_reply(reply.text)
                    if rest is None:
                        self._emit(ErrorEvent(message="the reply was cut off", code="protocol"))
                        status = "failed"
                    else:
                        add_text(rest)
            rest = chunker.flush()
            if rest:
                say(rest)
            await speech.finish()
            self._emit(
                Usage(
                    provider=self.settings.spec_key,
                    input_tokens=speech.stats.input_tokens,
                    output_tokens=speech.stats.output_tokens,
                    audio_seconds=speech.stats.audio_seconds,
                    requests=max(speech.stats.requests, 1),
                )
            )
            reply.generating = False
            self.ctx.replies.generated(reply.line, status)
        except asyncio.CancelledError:
            await speech.cancel()
            raise
        except ProviderError as err:
            await speech.cancel()
            reply.generating = False
            if err.code == "key_rejected":
                try:  # the speech socket's key: the next reply gets a fresh one, or we end
                    await self.ctx.refresh_key(err)
                except ProviderError as final:
                    self._fail(final)
                    return
            self.log.warning("reply %s failed: %s", reply.id, err)
            self._emit(ErrorEvent(message=str(err), code=err.code))
            self.ctx.replies.lost(reply.line, str(err))
        finally:
            reply.generating = False

    async def _with_fresh_key(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``; when the service rejects the key, ``ctx.refresh_key`` gives a fresh
        one once (the client reads it per request) and the call is made again."""
        while True:
            try:
                return await call()
            except ProviderError as err:
                if err.code != "key_rejected" or self._closed:
                    raise
                await self.ctx.refresh_key(err)

    async def _rest_of_reply(self, received: str) -> str | None:
        """The part of the reply a broken stream did not deliver, from the conversation the
        service keeps (``GET /v1/conversations/{id}/messages``); ``None`` if unavailable."""
        cid = self.conversation_id
        if cid is None:
            return None
        client = self._client

        async def op() -> Any:
            return await client.beta.conversations.get_messages_async(
                conversation_id=cid, timeout_ms=15_000
            )

        try:
            found = await call_with_retries(
                op, what="fetching the rest of the reply", policy=self.policy, log=self.log
            )
        except ProviderError as err:
            self.log.warning("could not fetch the rest of the reply: %s", err)
            return None
        for entry in reversed(list(getattr(found, "messages", None) or [])):
            if getattr(entry, "role", None) != "assistant":
                continue
            content = entry.content
            full = (
                content
                if isinstance(content, str)
                else "".join(_text_of(chunk) for chunk in content or [])
            )
            if full.startswith(received):
                self.log.info("fetched the rest of the reply from the conversation")
                return full[len(received) :]
            return None
        return None

    async def _interrupt_reply(self, by: Literal["barge_in", "user_key"]) -> bool:
        """Ask the engine's ledger to cut the reply (it calls :meth:`cancel` back)."""
        return await self.ctx.replies.cut(by) is not None

    async def cancel(self, reply: Reply, heard_ms: int, heard_text: str) -> None:
        """The engine cut ``reply``: stop the LLM and TTS streams; the next turn tells the
        agent what the user heard (``heard_text``)."""
        ours = self._reply
        if ours is None or ours.line is not reply:
            return
        ours.interrupted = True
        ours.marks["cut"] = time.monotonic()
        if ours.task is not None and not ours.task.done():
            await cancel_and_wait(ours.task)
        if heard_text != reply.text:
            self._heard_note = heard_text

    # -- reconnects -------------------------------------------------------------------------

    def _on_reconnecting(self, attempt: int, delay: float, reason: str) -> None:
        self._emit(Reconnecting(attempt=attempt, delay_s=delay, reason=reason))

    async def _on_reconnected(self, attempt: int) -> None:
        """Replay what the lost socket had not finished: the open turn's audio, and the
        audio of ended turns still waiting for their text (then flush)."""
        self._emit(Reconnected(attempt=attempt))
        assert self.listener is not None
        for turn in list(self._awaiting):
            if turn.final is None and turn.audio:
                turn.partial = turn.committed = ""  # the whole clip is transcribed again
                await self.listener.send(np.concatenate(turn.audio).tobytes())
                await self.listener.flush()
        open_turn = self._turn
        if open_turn is not None and open_turn.audio:
            open_turn.partial = open_turn.committed = ""
            await self.listener.send(np.concatenate(open_turn.audio).tobytes())


def build_client(api_key: str | Callable[[], str], server_url: str | None) -> Mistral:
    """One client for the whole session (keep-alive connections are reused), with every
    sub-client and event model it will use loaded up front (call it in a worker thread)."""
    from mistralai.client import Mistral, models
    from mistralai.extra import realtime

    client = Mistral(api_key=api_key, server_url=server_url, timeout_ms=30_000)
    audio, beta = client.audio, client.beta
    for sub in (audio.realtime, audio.realtime_speech, audio.speech, audio.transcriptions):
        assert sub is not None
    assert beta.agents is not None and beta.conversations is not None
    for name in (
        "TranscriptionStreamTextDelta",
        "TranscriptionStreamDone",
        "TurnDetectionStartEvent",
        "TurnDetectionEagerEndEvent",
        "TurnDetectionEndEvent",
        "RealtimeTranscriptionError",
        "MessageOutputEvent",
        "ResponseStartedEvent",
        "ToolExecutionStartedEvent",
        "ToolExecutionDoneEvent",
        "ResponseDoneEvent",
        "ResponseErrorEvent",
        "SpeechStreamAudioDelta",
        "SpeechStreamDone",
        "RealtimeSpeechError",
        "AudioFormat",
    ):
        getattr(models, name)
    assert realtime.UnknownRealtimeEvent is not None
    return client


def _text_of(content: Any) -> str:
    """Text of a message delta: a string, or a text chunk (tool references are skipped)."""
    if isinstance(content, str):
        return content
    if getattr(content, "type", None) == "text":
        return str(getattr(content, "text", "") or "")
    return ""


def _tool_activity(reply_id: str, name: str, status: Literal["started", "done"]) -> ToolActivity:
    label = TOOL_LABELS.get(name, f"using {name}…") if status == "started" else ""
    return ToolActivity(turn_id=reply_id, name=name, status=status, detail=label)
