"""The conversation engine: one live voice session, headless (no Textual).

The engine owns the audio endpoints, the turn mode, the session clock, the transcript and
usage stores and the latency waterfall; the provider session (one module per provider, see
:mod:`voicetui.providers.base`) owns the wire. Events flow one way: the provider reports
through ``ctx.emit``; the engine records each event (transcript store first, so a final is
on disk before anyone shows it), derives the session-level events (state changes, latency,
warnings, the end) and hands everything to its listeners in order, on the loop thread.
Commands come down as plain method calls.

State is derived, never set by providers:

* ``UserSpeechStarted`` / the talk key -> user speaking
* ``UserSpeechStopped`` / key released -> thinking
* the first sample of a reply entering the device callback -> assistant speaking
* reply done and playback drained -> listening (server VAD) or idle (push-to-talk)
* ``Interrupted`` -> interrupted; ``Reconnecting`` -> reconnecting; fatal error -> error

What the engine expects of a provider session (the seam; a provider is one module):

* emit ``UserSpeechStarted`` / ``UserSpeechStopped`` in both turn modes (the latency
  waterfall starts at the stop; in push-to-talk the engine also marks it itself);
* emit ``AssistantDone`` once per reply, whatever its outcome: until then the engine counts
  a reply as pending (state, max-duration end, end of a WAV run);
* enqueue reply audio with ``ctx.playback.enqueue(reply_id, pcm)``; the first sample
  entering the device callback drives "assistant speaking" and the first-audio latency;
* emit exactly one ``AssistantTextFinal`` per reply (``interrupted=True`` with the heard
  part when cut), and ``Interrupted`` when it cuts one;
* the engine sends mic frames only as the turn mode allows, never while muted, includes the
  input's pre-roll at a push-to-talk start, and pads a push-to-talk turn to 100 ms;
* raise :class:`ProviderError` from ``connect``/``run`` for failures the user must see
  (``run`` returning means the service closed the session);
* read ``ctx.api_key`` at every (re)connect, and when a reconnect inside ``run`` meets
  ``key_rejected``, ``await ctx.refresh_key(err)`` before giving up: a key from
  ``apiKeyCommand`` may have been rotated (:mod:`voicetui.engine.keys`). A rejection in
  ``connect`` or ``renew`` the engine handles itself (a new session with the fresh key).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from voicetui.audio.ports import ENGINE_RATE, AudioInput, AudioOutput, BargeInGate, CaptureFrame
from voicetui.engine.events import (
    AssistantAudio,
    AssistantDone,
    AssistantTextDelta,
    ErrorEvent,
    Event,
    Interrupted,
    Reconnected,
    Reconnecting,
    SessionEnded,
    SessionRolledOver,
    SessionStarted,
    SessionWarning,
    State,
    StateChanged,
    TurnLatency,
    Usage,
    UserSpeechStarted,
    UserSpeechStopped,
    UserTranscript,
)
from voicetui.engine.keys import FixedKey, KeyProvider, SessionKey
from voicetui.engine.replies import ReplyLedger
from voicetui.engine.rollover import RolloverClock
from voicetui.engine.tasks import cancel_and_wait
from voicetui.engine.transcript import TranscriptStore
from voicetui.engine.usage import UsageStore
from voicetui.providers.base import (
    Provider,
    ProviderError,
    ProviderSession,
    ProviderSettings,
    SessionContext,
)

log = logging.getLogger("voicetui.engine")

Listener = Callable[[Event], None]
EndCode = Literal["user", "max_duration", "error", "provider_closed", "input_finished"]

MIN_COMMIT_MS = 100.0  # the service rejects shorter commits
WARN_FRACTION = 0.9
TICK_S = 0.02
CLOSE_TIMEOUT_S = 5.0


def new_session_id() -> str:
    """Sortable, unique: ``20261122T034512Z-1a2b3c``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass
class _TurnClock:
    """Latency waterfall of one user turn (times are ``time.monotonic()``)."""

    turn_id: str
    speech_end: float | None = None
    final_transcript: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    audio_queued: bool = False
    done: bool = False
    emitted: bool = False

    def ms(self, t: float | None) -> float | None:
        if t is None or self.speech_end is None:
            return None
        return round((t - self.speech_end) * 1000.0, 1)


class ConversationEngine:
    """One conversation: audio in -> provider -> audio out, with events to listeners.

    ``end_when_input_ends`` is for WAV-driven runs (``voicetui talk``): when the input ends
    the engine closes the open turn, waits for the replies to finish playing and ends with
    code ``input_finished``. ``preroll_ms`` of audio captured just before the talk key is
    sent at the start of each push-to-talk turn, so the first syllable is not clipped.
    """

    def __init__(
        self,
        *,
        provider: Provider,
        settings: ProviderSettings,
        api_key: str | KeyProvider,
        audio_in: AudioInput,
        audio_out: AudioOutput,
        gate: BargeInGate,
        store: TranscriptStore | None = None,
        usage: UsageStore | None = None,
        state_dir: Path | None = None,
        end_when_input_ends: bool = False,
        preroll_ms: float = 200.0,
        input_end_settle_s: float = 0.5,
        reply_timeout_s: float = 60.0,
        max_duration_grace_s: float = 30.0,
        talk_on_connect: bool = False,
    ) -> None:
        self._provider = provider
        self._settings = settings
        # a string is a key that cannot change; a KeyProvider from a command is read again
        # (once) when the service rejects it
        keys = FixedKey(api_key) if isinstance(api_key, str) else api_key
        self._key = SessionKey(
            keys,
            api_key if isinstance(api_key, str) else keys.current(),
            service=settings.spec_key.rsplit(".", 1)[-1],
        )
        self._ctx: SessionContext | None = None
        self._audio_in = audio_in
        self._audio_out = audio_out
        self._gate = gate
        self._store = store
        self._usage = usage
        self._state_dir = state_dir
        self._end_when_input_ends = end_when_input_ends
        self._preroll_ms = preroll_ms
        self._settle_s = input_end_settle_s
        self._reply_timeout_s = reply_timeout_s
        self._grace_s = max_duration_grace_s
        self._talk_on_connect = talk_on_connect

        self.session_id = new_session_id()
        self._listeners: list[Listener] = []
        self._pending: deque[Event] = deque()
        self._dispatching = False
        self._state = State.CONNECTING  # not live until the provider answers
        self._session: ProviderSession | None = None
        self._replies = ReplyLedger(self._emit, audio_out)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._ran = False

        # turn bookkeeping
        self._talking = False
        self._muted = False
        self._turn_lock = asyncio.Lock()
        self._turn_sent_ms = 0.0
        self._preroll: deque[CaptureFrame] = deque()
        self._preroll_total_ms = 0.0
        self._user_speaking = False
        self._awaiting_reply = False
        self._reply_active = False
        self._clock: _TurnClock | None = None
        self._turn_seq = 0

        # session clock and ending
        self._started_at: float | None = None
        self._warned = False
        self._closing_input = False  # max duration reached: no more mic audio
        self._closing_since: float | None = None
        self._input_ended_at: float | None = None
        self._quiet_since: float | None = None
        self._end_requested = asyncio.Event()
        self._wake = asyncio.Event()  # something happened: the tick looks again
        self._end_reason = "ended by user"
        self._end_code: EndCode = "user"
        self._ended: SessionEnded | None = None
        self._rollover = RolloverClock(settings.max_session_duration_s)

    # --- read-only properties (cheap; safe to poll from the UI) ------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def talking(self) -> bool:
        """Push-to-talk: the talk key is down."""
        return self._talking

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def input_level_dbfs(self) -> float:
        return self._audio_in.level_dbfs

    @property
    def output_level_dbfs(self) -> float:
        return self._audio_out.level_dbfs

    @property
    def elapsed_s(self) -> float:
        """Seconds since the session started (0 before it is connected)."""
        if self._started_at is None:
            return 0.0
        return time.monotonic() - self._started_at

    @property
    def max_duration_s(self) -> float:
        return self._settings.max_session_duration_s

    @property
    def settings(self) -> ProviderSettings:
        return self._settings

    @property
    def turn_detection(self) -> str:
        return self._settings.turn_detection

    # --- listeners ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every event, in order, on the loop thread."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    # --- commands ----------------------------------------------------------------------

    async def toggle_talk(self) -> None:
        """Push-to-talk key: start the turn if idle, end it if talking. The decision is taken
        under the turn lock, so presses queue behind a slow start and none is lost."""
        async with self._turn_lock:
            if self._talking:
                await self._stop_talking_locked()
            else:
                await self._start_talking_locked()

    async def start_talking(self) -> None:
        """Push-to-talk pressed: interrupt the assistant if audible, send the pre-roll, and
        stream the mic until :meth:`stop_talking`. No-op in server-VAD mode."""
        session = self._session
        if session is None or self._settings.turn_detection != "push_to_talk":
            return
        async with self._turn_lock:
            await self._start_talking_locked()

    async def _start_talking_locked(self) -> None:
        session = self._session
        if session is None or self._settings.turn_detection != "push_to_talk":
            return
        if self._closing_input or self._ended is not None:
            return
        if self._talking:
            return
        if self._replies.busy():
            await self._replies.cut("barge_in")  # the talk key cuts the assistant first
        self._new_turn_clock(f"ptt-{self._turn_seq + 1}")
        try:
            await session.start_user_turn()
            self._turn_sent_ms = 0.0
            for frame in self._take_preroll():
                await session.send_audio(frame)
                self._turn_sent_ms += frame.duration_ms
        except ProviderError as exc:
            self._provider_failed(exc, fatal=False)
            return
        self._talking = True
        self._user_speaking = True
        self._set_state(State.USER_SPEAKING, "talk key down")

    async def stop_talking(self) -> None:
        """Push-to-talk released: commit the turn (at least 100 ms) and ask for a reply."""
        async with self._turn_lock:
            await self._stop_talking_locked()

    async def _stop_talking_locked(self) -> None:
        session = self._session
        if session is None:
            return
        if not self._talking:
            return
        self._talking = False
        self._user_speaking = False
        try:
            short = MIN_COMMIT_MS - self._turn_sent_ms
            if short > 0:
                # never commit under 100 ms: pad a tap with silence
                pad = np.zeros(int(ENGINE_RATE * short / 1000.0) + 1, dtype=np.int16)
                await session.send_audio(
                    CaptureFrame(
                        pcm=pad,
                        captured_at=time.monotonic(),
                        rms_dbfs=-120.0,
                        peak_dbfs=-120.0,
                        speech=False,
                    )
                )
                self._turn_sent_ms += len(pad) * 1000.0 / ENGINE_RATE
            if self._clock is not None and self._clock.speech_end is None:
                self._clock.speech_end = time.monotonic()
            self._awaiting_reply = True
            self._set_state(State.THINKING, "talk key up")
            await session.end_user_turn()
        except ProviderError as exc:
            self._awaiting_reply = False
            self._provider_failed(exc, fatal=False)

    async def interrupt(self) -> None:
        """Interrupt key: cancel the reply, flush playback, tell the service what was heard."""
        if self._session is None:
            return
        async with self._turn_lock:
            try:
                if await self._replies.cut("user_key") is None and not hasattr(
                    self._session, "cancel"
                ):
                    await self._session.interrupt()
            except ProviderError as exc:
                self._provider_failed(exc, fatal=False)

    def set_muted(self, muted: bool) -> None:
        """Muted: no mic audio is sent at all (the provider hears nothing)."""
        self._muted = muted

    async def end(self, reason: str = "ended by user") -> None:
        """End the session now; :meth:`run` returns its :class:`SessionEnded`."""
        self._request_end(reason, "user")

    def report_error(self, message: str, *, code: str = "device", fatal: bool = True) -> None:
        """For the audio rig's ``on_error``: safe to call from any thread."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(lambda: self.report_error(message, code=code, fatal=fatal))
            return
        self._emit(ErrorEvent(message=message, code=code, fatal=fatal))
        if fatal:
            self._request_end(message, "error")

    # --- the session -------------------------------------------------------------------

    async def run(self) -> SessionEnded:
        """Run the session to its end. Never raises for provider, device or network
        errors: they become :class:`ErrorEvent` and the session ends with code ``error``.
        Cancelling the task still closes the connection and the devices, then re-raises."""
        if self._ran:
            raise RuntimeError("a ConversationEngine runs once")
        self._ran = True
        try:
            return await self._run()
        except asyncio.CancelledError:
            self._request_end("the session was cancelled", "user")
            with contextlib.suppress(Exception):
                await self._finish()
            raise

    async def _run(self) -> SessionEnded:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._store is not None:
            self._store.on_failure = self._store_failed
            try:
                self._store.open(self.session_id)
            except OSError as exc:
                log.warning("transcript store unavailable: %s", exc)
                self._store = None
        # the engine is "connecting" from its construction (a talk key pressed before the
        # provider answers has nothing to talk to); the transcript still opens with the state
        self._emit(StateChanged(state=State.CONNECTING, previous=State.IDLE, reason="starting"))
        try:
            await self._audio_out.start()
            await self._audio_in.start()
        except Exception as exc:  # AudioError carries a one-line message
            log.debug("audio start failed", exc_info=True)
            return await self._finish_with_error(str(exc) or type(exc).__name__, "device")
        self._audio_out.set_on_first_audio(self._on_first_audio)

        ctx = SessionContext(
            settings=self._settings,
            api_key=self._key.value,
            emit=self._emit,
            playback=self._audio_out,
            gate=self._gate,
            state_dir=self._state_dir or Path("."),
            replies=self._replies,
            log=logging.getLogger(f"voicetui.provider.{self._settings.spec_key}"),
            session_id=self.session_id,
            refresh_key=self._refresh_key,
        )
        self._ctx = ctx
        self._audio_out.set_on_played(self._on_played)
        try:
            session = await self._connect_with_fresh_key(ctx)
            if session is None:
                return await self._finish()
        except ProviderError as exc:
            return await self._finish_with_error(str(exc), exc.code)
        except Exception as exc:
            log.exception("provider connect failed")
            return await self._finish_with_error(f"could not start the session: {exc}", "error")

        self._started_at = time.monotonic()
        self._emit(
            SessionStarted(
                provider=self._settings.spec_key,
                model=self._settings.model,
                voice=self._settings.voice,
                turn_detection=self._settings.turn_detection,
                session_id=self.session_id,
                max_duration_s=self._settings.max_session_duration_s,
            )
        )
        self._set_state(self._rest_state(), "connected")
        if self._talk_on_connect:
            # WAV push-to-talk: the whole file is one turn, so the key goes down before the
            # first frame is read
            await self.start_talking()

        # The session's tasks live in one TaskGroup: when the session ends (or run() is
        # cancelled) each is cancelled and awaited, so none outlives the session.
        try:
            async with asyncio.TaskGroup() as tasks:
                children = [
                    tasks.create_task(self._run_provider(session), name="provider"),
                    tasks.create_task(self._pump_mic(), name="mic"),
                    tasks.create_task(self._tick(), name="engine-tick"),
                ]
                await self._end_requested.wait()
                for child in children:
                    child.cancel()
        except* Exception as group:  # a bug in one of them: end cleanly, say so
            failure = group.exceptions[0]
            log.error("session task crashed", exc_info=failure)
            message = f"the session failed: {failure}"
            self._emit(ErrorEvent(message=message, code="error", fatal=True))
            self._request_end(message, "error")
        return await self._finish()

    async def _run_provider(self, session: ProviderSession) -> None:
        """The provider's receive loop; how it ends decides how the session ends."""
        try:
            await session.run()
        except ProviderError as exc:
            if not self._end_requested.is_set():
                self._provider_failed(exc, fatal=True)
            return
        except Exception as exc:
            if not self._end_requested.is_set():
                log.error("provider session crashed", exc_info=exc)
                message = f"the session failed: {exc}"
                self._emit(ErrorEvent(message=message, code="error", fatal=True))
                self._request_end(message, "error")
            return
        self._request_end("the provider closed the session", "provider_closed")

    async def _connect_with_fresh_key(self, ctx: SessionContext) -> ProviderSession | None:
        """Create the provider session and connect it; a key from a command that the
        service rejects is read again once and a new session connects with it. None when
        :meth:`end` came first. Raises :class:`ProviderError`."""
        while True:
            session = self._provider.create_session(ctx)
            self._session = session
            # a provider that reports its replies through the ledger implements cancel();
            # one that does not keeps its own interrupt() (the ledger then has nothing to cut)
            self._replies.set_canceller(getattr(session, "cancel", None))
            try:
                if not await self._connect_unless_ended(session):
                    return None
            except ProviderError as exc:
                if exc.code != "key_rejected":
                    raise
                # a half-open session is not reused: the next one starts clean with the key
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.close(), CLOSE_TIMEOUT_S)
                self._session = None
                await self._refresh_key(exc)  # raises when there is no fresh key
                continue
            self._key.accepted()
            return session

    async def _refresh_key(self, rejected: ProviderError) -> None:
        """``ctx.refresh_key``: the service rejected the key; put a fresh one in the
        context or raise the :class:`ProviderError` that ends the session."""
        fresh = await self._key.refresh(rejected)
        if self._ctx is not None:
            self._ctx.api_key = fresh

    async def _renew_with_fresh_key(self, renew: Callable[[], Awaitable[object]]) -> str:
        """The provider's ``renew()``, with one key refresh when the service rejects the
        key of the new session (the old one keeps running meanwhile)."""
        while True:
            try:
                seeded = str(await renew())
            except ProviderError as exc:
                if exc.code != "key_rejected":
                    raise
                await self._refresh_key(exc)  # raises when there is no fresh key
                continue
            self._key.accepted()
            return seeded

    async def _connect_unless_ended(self, session: ProviderSession) -> bool:
        """Connect, unless :meth:`end` comes first (quitting while connecting)."""
        connect = asyncio.create_task(session.connect(), name="provider-connect")
        ended = asyncio.create_task(self._end_requested.wait(), name="end-wait")
        try:
            await asyncio.wait({connect, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not connect.done():  # quitting while connecting, or run() was cancelled
                await cancel_and_wait(connect)
        if not connect.cancelled():
            connect.result()  # raises ProviderError
            return True
        return False

    # --- internals: audio ----------------------------------------------------------------

    async def _pump_mic(self) -> None:
        ptt = self._settings.turn_detection == "push_to_talk"
        # a WAV read as fast as possible must not starve the receive loop; a paced input
        # (a device, a real-time WAV) waits for each block anyway
        unpaced = getattr(self._audio_in, "realtime", True) is False
        try:
            async for frame in self._audio_in.frames():
                if unpaced:
                    await asyncio.sleep(0)
                self._gate.observe_mic(frame)
                session = self._session
                if session is None or self._muted or self._closing_input:
                    continue
                if ptt:
                    async with self._turn_lock:
                        if self._talking:
                            await session.send_audio(frame)
                            self._turn_sent_ms += frame.duration_ms
                        else:
                            self._keep_preroll(frame)
                elif self._gate.mic_open():
                    await session.send_audio(frame)
        except asyncio.CancelledError:
            raise
        except ProviderError as exc:
            self._provider_failed(exc, fatal=True)
            return
        except Exception as exc:
            log.exception("microphone failed")
            self.report_error(f"the microphone failed: {exc}", code="device", fatal=True)
            return
        self._input_ended_at = time.monotonic()
        self._wake.set()
        log.info("audio input ended")
        if self._talking:  # the input is over, so is the turn
            await self.stop_talking()

    def _take_preroll(self) -> list[CaptureFrame]:
        """The audio captured just before the key went down: the input's own pre-roll when
        it keeps one (device and WAV inputs do), else the engine's ring of recent frames."""
        frames = list(self._preroll)
        self._preroll.clear()
        self._preroll_total_ms = 0.0
        source = getattr(self._audio_in, "preroll", None)
        if callable(source) and self._preroll_ms > 0:
            try:
                pcm = np.asarray(source(self._preroll_ms), dtype=np.int16)
            except Exception:
                log.debug("input pre-roll unavailable", exc_info=True)
            else:
                if len(pcm) == 0:
                    return []
                return [
                    CaptureFrame(
                        pcm=pcm, captured_at=time.monotonic(), rms_dbfs=-120.0, peak_dbfs=-120.0
                    )
                ]
        return frames

    def _keep_preroll(self, frame: CaptureFrame) -> None:
        self._preroll.append(frame)
        self._preroll_total_ms += frame.duration_ms
        while self._preroll and self._preroll_total_ms - self._preroll[0].duration_ms >= (
            self._preroll_ms
        ):
            self._preroll_total_ms -= self._preroll.popleft().duration_ms

    def _on_first_audio(self, item_id: str, at: float) -> None:
        """The first sample of ``item_id`` entered the device callback."""
        clock = self._clock
        if clock is not None and clock.first_audio is None and clock.speech_end is not None:
            clock.first_audio = at
            self._maybe_emit_latency()
        if self._state in (State.THINKING, State.LISTENING, State.IDLE, State.INTERRUPTED):
            self._set_state(State.ASSISTANT_SPEAKING, "reply playing")

    # --- internals: the periodic tick ------------------------------------------------------

    def _busy(self) -> bool:
        return (
            self._talking
            or self._user_speaking
            or self._awaiting_reply
            or self._reply_active
            or self._audio_out.is_active()
        )

    def _quiet(self) -> bool:
        """Nothing is happening that the tick must follow: it can sleep until woken."""
        if self._busy() or self._closing_since is not None:
            return False
        if self._state in (State.THINKING, State.ASSISTANT_SPEAKING, State.INTERRUPTED):
            return False  # the resting state is still to be derived
        return not (
            self._end_when_input_ends
            and self._input_ended_at is not None
            and self._quiet_since is None
        )

    def _next_deadline_s(self) -> float | None:
        """Seconds until the next timed decision (warning, cap, settle, reply timeout)."""
        now = time.monotonic()
        due: list[float] = []
        max_s = self._settings.max_session_duration_s
        if self._started_at is not None and max_s > 0:
            if not self._warned:
                due.append(self._started_at + WARN_FRACTION * max_s)
            if not self._closing_input:
                due.append(self._started_at + max_s)
            if self._settings.on_max_duration == "rollover" and not self._rollover.failed:
                # the rollover window opens (or a retry is due); past it, look again per tick
                at = self._started_at + self._rollover.due_at_s()
                due.append(max(at, now + TICK_S))
        if self._quiet_since is not None:
            due.append(self._quiet_since + self._settle_s)
        if self._end_when_input_ends and self._input_ended_at is not None:
            due.append(self._input_ended_at + self._reply_timeout_s)
        return max(min(due) - now, 0.0) if due else None

    def _on_played(self, item_id: str, at: float) -> None:
        """Playback: an item's queued audio has all been played (ledger, then the tick)."""
        self._replies.played(item_id, at)
        self._wake.set()

    async def _tick(self) -> None:
        """Session clock and derived state. Runs at 50 Hz only while something happens
        (a turn, a reply, playback); otherwise it sleeps until an event or a deadline."""
        max_s = self._settings.max_session_duration_s
        while True:
            if self._quiet():
                self._wake.clear()
                timeout = self._next_deadline_s()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            else:
                await asyncio.sleep(TICK_S)
            now = time.monotonic()
            playing = self._audio_out.is_active()
            busy = (
                self._talking
                or self._user_speaking
                or self._awaiting_reply
                or self._reply_active
                or playing
            )
            # derive the resting state once the reply has drained
            if not busy and self._state in (
                State.THINKING,
                State.ASSISTANT_SPEAKING,
                State.INTERRUPTED,
            ):
                self._set_state(self._rest_state(), "reply finished")
            elif (
                playing
                and self._state in (State.THINKING, State.INTERRUPTED)
                and (self._reply_active or not self._awaiting_reply)
            ):
                self._set_state(State.ASSISTANT_SPEAKING, "reply playing")

            # the session clock (past the limit in a new provider session, or to the end)
            rolls_over = await self._roll_over_when_due(now, busy)
            if not rolls_over and self._started_at is not None and max_s > 0:
                elapsed = now - self._started_at
                if not self._warned and elapsed >= WARN_FRACTION * max_s:
                    self._warned = True
                    left = max(max_s - elapsed, 0.0)
                    self._emit(
                        SessionWarning(
                            message=f"session ends in {left:.0f} s (maximum {max_s:g} s)",
                            code="max_duration_soon",
                        )
                    )
                if elapsed >= max_s and not self._closing_input:
                    self._closing_input = True
                    self._closing_since = now
                    log.info("max session duration reached; finishing the current reply")
                    if self._talking:
                        # the key is still down: drop the turn rather than start a new reply
                        self._talking = False
                        self._user_speaking = False
            if self._closing_since is not None:
                waited = now - self._closing_since
                if not busy or waited >= self._grace_s:
                    self._request_end(
                        f"maximum session duration reached ({max_s:g} s)", "max_duration"
                    )
                    return

            # WAV-driven runs: end once the input is over and everything has been answered
            if self._end_when_input_ends and self._input_ended_at is not None:
                if busy:
                    self._quiet_since = None
                elif self._quiet_since is None:
                    self._quiet_since = now
                if self._quiet_since is not None and now - self._quiet_since >= self._settle_s:
                    self._request_end("input finished", "input_finished")
                    return
                if now - self._input_ended_at >= self._reply_timeout_s:
                    self._emit(ErrorEvent(message="gave up waiting for the reply", code="timeout"))
                    self._request_end("input finished; no reply came", "input_finished")
                    return

    async def _roll_over_when_due(self, now: float, busy: bool) -> bool:
        """``onMaxDuration = "rollover"``: renew the provider session between turns before
        the limit (see :mod:`voicetui.engine.rollover`). False when the limit ends the
        session instead (policy ``end``, a provider that cannot renew, a failed renewal)."""
        session = self._session
        renew = getattr(session, "renew", None)
        if (
            self._settings.on_max_duration != "rollover"
            or not callable(renew)
            or self._rollover.failed
            or self._closing_input
        ):
            return False
        if self._started_at is None:
            return True
        elapsed = now - self._started_at
        if not self._rollover.due(elapsed, busy=busy or self._replies.busy()):
            return True
        log.info("renewing the provider session after %.1f s (session limit)", elapsed)
        try:
            if self._settings.turn_detection == "push_to_talk":
                # a key press waits for the new session rather than start on the old one
                async with self._turn_lock:
                    if self._talking:
                        return True  # pressed just now: renew after this turn
                    seeded = await self._renew_with_fresh_key(renew)
            else:
                seeded = await self._renew_with_fresh_key(renew)
        except ProviderError as exc:
            log.warning("session rollover failed: %s", exc)
            if not self._rollover.renewal_failed(elapsed, retryable=exc.retryable):
                return True  # tried again shortly, still between turns
            self._emit(
                SessionWarning(
                    message=f"could not continue in a new session ({exc}); "
                    "the session ends at its limit",
                    code="rollover_failed",
                )
            )
            return False
        except Exception:  # a provider bug must not stop the session clock
            self._rollover.failed = True
            log.exception("session rollover failed")
            return False
        self._rollover.renewed()
        self._started_at = time.monotonic()  # the session clock restarts
        self._warned = False
        self._emit(
            SessionRolledOver(number=self._rollover.sessions, after_s=elapsed, seeded=seeded)
        )
        return True

    def _rest_state(self) -> State:
        if self._talking or self._user_speaking:
            return State.USER_SPEAKING
        if self._settings.turn_detection == "server_vad":
            return State.LISTENING
        return State.IDLE

    # --- internals: events -------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """Record, derive, and hand ``event`` to the listeners (re-entrant, ordered)."""
        self._wake.set()
        self._pending.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                ev = self._pending.popleft()
                self._record(ev)
                self._derive(ev)
                for listener in list(self._listeners):
                    try:
                        listener(ev)
                    except Exception:
                        log.exception("listener %r failed on %s", listener, ev.kind)
        finally:
            self._dispatching = False

    def _store_failed(self, message: str) -> None:
        """The disk refused the transcript (called once, from the writer thread): say so."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            text = f"{message}; the conversation goes on (export it to another disk)"
            event = ErrorEvent(message=text, code="storage")
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._emit, event)

    def _record(self, event: Event) -> None:
        if self._store is not None:
            try:
                self._store.append(event)
            except OSError as exc:
                log.error("transcript write failed: %s", exc)
        if self._usage is not None and isinstance(event, Usage):
            try:
                self._usage.add(event)
            except OSError as exc:
                log.error("usage write failed: %s", exc)

    def _derive(self, event: Event) -> None:
        if isinstance(event, UserSpeechStarted):
            if self._clock is None or self._clock.speech_end is not None:
                self._new_turn_clock(event.turn_id)  # a new turn (the talk key made its own)
            self._user_speaking = True
            self._set_state(State.USER_SPEAKING, "speech started")
        elif isinstance(event, UserSpeechStopped):
            clock = self._clock
            if clock is None:
                clock = self._new_turn_clock(event.turn_id)
            if clock.speech_end is None:
                clock.speech_end = event.at
            clock.turn_id = event.turn_id
            self._user_speaking = False
            if not self._talking:
                self._awaiting_reply = True
                self._set_state(State.THINKING, "speech stopped")
        elif isinstance(event, UserTranscript):
            clock = self._clock
            if (
                event.final
                and clock is not None
                and clock.final_transcript is None
                and (clock.speech_end is not None)
            ):
                clock.final_transcript = event.at
                clock.turn_id = event.turn_id
        elif isinstance(event, AssistantTextDelta):
            self._key.accepted()  # the service is answering: the key works
            self._reply_active = True
            clock = self._clock
            if clock is not None and clock.first_text is None and clock.speech_end is not None:
                clock.first_text = event.at
        elif isinstance(event, AssistantAudio):
            self._reply_active = True
            if self._clock is not None:
                self._clock.audio_queued = True
        elif isinstance(event, AssistantDone):
            self._reply_active = False
            self._awaiting_reply = False
            if self._clock is not None:
                self._clock.done = True
                self._maybe_emit_latency()
        elif isinstance(event, Interrupted):
            self._set_state(State.INTERRUPTED, f"interrupted ({event.by})")
        elif isinstance(event, Reconnecting):
            self._set_state(State.RECONNECTING, event.reason)
        elif isinstance(event, Reconnected):
            self._key.accepted()
            self._set_state(self._rest_state(), "reconnected")
        elif isinstance(event, ErrorEvent) and event.fatal:
            self._set_state(State.ERROR, event.message)

    def _set_state(self, state: State, reason: str = "") -> None:
        if self._state in (state, State.ENDED):
            return
        previous = self._state
        self._state = state
        self._emit(StateChanged(state=state, previous=previous, reason=reason))

    def _new_turn_clock(self, turn_id: str) -> _TurnClock:
        self._maybe_emit_latency(force=True)
        self._turn_seq += 1
        self._clock = _TurnClock(turn_id=turn_id)
        return self._clock

    def _maybe_emit_latency(self, *, force: bool = False) -> None:
        clock = self._clock
        if clock is None or clock.emitted or clock.speech_end is None:
            return
        complete = clock.first_audio is not None and (
            clock.final_transcript is not None or clock.done
        )
        nothing_to_play = clock.done and not clock.audio_queued
        if not (complete or nothing_to_play or force):
            return
        clock.emitted = True
        self._emit(
            TurnLatency(
                turn_id=clock.turn_id,
                final_transcript_ms=clock.ms(clock.final_transcript),
                first_text_ms=clock.ms(clock.first_text),
                first_audio_ms=clock.ms(clock.first_audio),
            )
        )

    def _provider_failed(self, exc: ProviderError, *, fatal: bool) -> None:
        self._emit(ErrorEvent(message=str(exc), code=exc.code, fatal=fatal))
        if fatal:
            self._request_end(str(exc), "error")

    def _request_end(self, reason: str, code: EndCode) -> None:
        if self._end_requested.is_set():
            return
        self._end_reason = reason
        self._end_code = code
        self._end_requested.set()

    async def _finish_with_error(self, message: str, code: str) -> SessionEnded:
        self._emit(ErrorEvent(message=message, code=code, fatal=True))
        self._request_end(message, "error")
        return await self._finish()

    async def _finish(self) -> SessionEnded:
        if self._ended is not None:
            return self._ended
        self._maybe_emit_latency(force=True)
        if self._session is not None:
            try:
                await asyncio.wait_for(self._session.close(), CLOSE_TIMEOUT_S)
            except Exception:
                log.warning("provider close failed", exc_info=True)
        self._replies.close()  # lines still open become final with what was heard
        for stop in (self._audio_in.stop, self._audio_out.stop):
            try:
                await asyncio.wait_for(stop(), CLOSE_TIMEOUT_S)
            except Exception:
                log.warning("audio stop failed", exc_info=True)
        with contextlib.suppress(Exception):
            self._audio_out.set_on_first_audio(None)
            self._audio_out.set_on_played(None)
        ended = SessionEnded(reason=self._end_reason, code=self._end_code)
        self._emit(ended)
        self._set_state(State.ENDED, self._end_reason)
        self._ended = ended
        if self._store is not None:
            self._store.close()
            # run() returns once the transcript is on disk (the writer thread drains it)
            await asyncio.to_thread(self._store.wait, CLOSE_TIMEOUT_S)
        return ended
