"""The console: transcript, always-visible status, and the talk keys."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Header

from voicetui.engine.events import (
    ErrorEvent,
    Event,
    Reconnected,
    Reconnecting,
    SessionEnded,
    SessionStarted,
    SessionWarning,
    State,
    StateChanged,
    TurnLatency,
    Usage,
)
from voicetui.tui.messages import EngineEvent, HealthUpdated, SessionStopped
from voicetui.tui.screens.base import VoiceScreen
from voicetui.tui.widgets.footer import ConsoleFooter
from voicetui.tui.widgets.meters import LevelMeter
from voicetui.tui.widgets.status import (
    HealthLine,
    LatencySummary,
    SessionLine,
    SessionTimer,
    StateBadge,
    TurnModeBadge,
    UsageLine,
)
from voicetui.tui.widgets.transcript import TranscriptView
from voicetui.tui.widgets.waterfall import LatencyWaterfall

if TYPE_CHECKING:
    pass

log = logging.getLogger("voicetui.tui")

METER_HZ = 12.0
BARGE_IN_REFUSED = "barge_in_refused"  # SessionWarning.code: the echo gate kept the reply on
BARGE_IN_REFUSED_TEXT = (
    "couldn't tell you from the echo, so the reply went on — use headphones, "
    'or set duplex = "full" in settings (or i / Esc interrupts)'
)
# websocket and HTTP-client jargon -> what a user can act on
_PLAIN_REASONS = (
    ("no close frame", "the connection dropped"),
    ("connectionclosed", "the connection dropped"),
    ("connection reset", "the connection dropped"),
    ("timed out", "no answer in time"),
    ("timeout", "no answer in time"),
    ("name or service not known", "the network or the provider's address is unreachable"),
    ("cannot connect", "cannot reach the provider"),
    ("connection refused", "cannot reach the provider"),
)


class ConsoleScreen(VoiceScreen):
    """Main screen of the app."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "talk", "Talk", key_display="Space"),
        Binding("i,escape", "interrupt", "Interrupt"),
        Binding("m", "mute", "Mute"),
        Binding("n", "new_conversation", "New"),
        Binding("s", "settings", "Settings"),
        Binding("k", "keys", "Keys"),
        Binding("h", "health", "Health"),
        Binding("t", "theme", "Theme"),
        Binding("q", "app.quit", "Quit"),
    ]

    # The status reflows by width (see app.tcss): -narrow (60 columns), -medium and -roomy
    # (80-119: three lines, a one-line latency; -roomy has room for more footer keys), -wide
    # (the waterfall beside the status lines).
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (76, "-medium"),
        (96, "-roomy"),
        (120, "-wide"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._poll_timer: Timer | None = None
        self._max_s = 0.0
        self._last_second = -1
        self._provider = ""
        self._barge_in_refused_shown = False
        self._last_error = ""

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield TranscriptView(id="transcript")
        # Rows in priority order: state > turn mode > provider/model > voice, then meters and
        # timer, then usage, health and latency.
        with Horizontal(id="status"):
            with Vertical(id="status-left"):
                with Horizontal(classes="status-row"):
                    yield StateBadge(id="state")
                    yield TurnModeBadge("", id="turn-mode")
                    yield SessionLine("no session", id="session-line")
                with Horizontal(classes="status-row"):
                    yield LevelMeter("mic", id="mic-meter")
                    yield LevelMeter("spk", id="spk-meter")
                    yield SessionTimer("session 00:00 / —", id="timer")
                with Horizontal(classes="status-row"):
                    yield UsageLine("today —", id="usage")
                    yield HealthLine("health —", id="health-line")
                    yield LatencySummary("latency —", id="latency-summary")
            yield LatencyWaterfall(id="waterfall")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.transcript.add_notice("welcome to voicetui — Space talks, Ctrl+P opens the palette")
        if self.vapp.welcome:
            self.transcript.add_notice(self.vapp.welcome)
        if not self.vapp.frozen:
            # Meters and timer poll the engine's cheap properties; values are rounded and
            # unchanged ones do not repaint. The clock runs only while a session exists.
            self._poll_timer = self.set_interval(1 / METER_HZ, self._poll, pause=True)

    def _resume_clock(self) -> None:
        if self._poll_timer is not None:
            self.transcript.set_paced(True)
            self._poll_timer.resume()

    def _pause_clock(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.pause()
            self.transcript.set_paced(False)

    @property
    def transcript(self) -> TranscriptView:
        """The transcript widget."""
        return self.query_one(TranscriptView)

    # --- live status -----------------------------------------------------------------------

    def _poll(self) -> None:
        # One clock for the meters, the timer and the streaming text: fewer frames to draw.
        engine = self.vapp.engine
        mic = self.query_one("#mic-meter", LevelMeter)
        spk = self.query_one("#spk-meter", LevelMeter)
        self.transcript.flush()
        if engine is None:
            mic.set_level(-120.0)
            spk.set_level(-120.0)
            self._pause_clock()  # nothing live: an idle console costs nothing
            return
        mic.muted = engine.muted
        mic.set_level(engine.input_level_dbfs)
        spk.set_level(engine.output_level_dbfs)
        second = int(engine.elapsed_s)
        if second != self._last_second:
            self._last_second = second
            self.query_one(SessionTimer).show(engine.elapsed_s, engine.max_duration_s)

    def session_starting(self, provider_key: str) -> None:
        """The app is building a session for ``provider_key``."""
        self.query_one(StateBadge).set_state(State.CONNECTING)
        self._resume_clock()
        if provider_key != self._provider:
            # the last turn's numbers belong to the previous provider
            self._show_latency(None)
        self._provider = provider_key
        self.query_one(SessionLine).show_note(short_provider(provider_key), "connecting…")
        self._refresh_usage(provider_key)

    def _show_latency(self, latency: TurnLatency | None) -> None:
        self.query_one(LatencyWaterfall).latency = latency
        self.query_one(LatencySummary).show(latency)

    def voice_name(self, spec_key: str, voice_id: str) -> str:
        """The voice's display name when the provider's list is loaded, else its id."""
        for voice in self.vapp.voices.get(spec_key, []):
            if voice.id == voice_id:
                return voice.name or voice_id
        return voice_id

    def voices_loaded(self, spec_key: str) -> None:
        """The provider's voices arrived: show the live voice by name."""
        line = self.query_one(SessionLine)
        if spec_key == self._provider and line.voice:
            line.set_voice_name(self.voice_name(spec_key, line.voice))

    def _refresh_usage(self, provider_key: str) -> None:
        try:
            from voicetui.engine.usage import UsageStore

            totals = UsageStore().today(provider_key)
        except Exception:  # usage is a nicety; a broken file must not hurt the console
            return
        self.query_one(UsageLine).show(
            totals.input_tokens, totals.output_tokens, totals.audio_seconds, totals.requests
        )

    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        try:
            self._show_event(message.event)
        except Exception:  # a drawing bug must never take the conversation down
            log.exception("cannot show %s", message.event.kind)

    def _show_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self.query_one(StateBadge).set_state(event.state)
            if self.vapp.engine is not None:
                self._resume_clock()
        elif isinstance(event, SessionStarted):
            self._max_s = event.max_duration_s
            self._barge_in_refused_shown = False
            self._last_error = ""
            self._provider = event.provider
            self.query_one(SessionLine).show(
                short_provider(event.provider),
                event.model,
                event.voice,
                self.voice_name(event.provider, event.voice),
            )
            self.query_one(TurnModeBadge).show(event.turn_detection)
            self.query_one(SessionTimer).show(0.0, event.max_duration_s)
            self.transcript.add_notice(
                f"session started with {short_provider(event.provider)} ({event.model}); "
                + (
                    "press Space to talk, Space again to send"
                    if event.turn_detection == "push_to_talk"
                    else "just talk — the server detects your turns"
                )
            )
        elif isinstance(event, TurnLatency):
            self._show_latency(event)
        elif isinstance(event, Usage):
            self._refresh_usage(event.provider)
        elif isinstance(event, Reconnecting):
            # one line that updates in place, in plain words, however many tries it takes
            self.query_one(StateBadge).set_state(State.RECONNECTING, f"try {event.attempt}")
            self.transcript.add_notice(
                f"connection lost ({plain_reason(event.reason)}); reconnecting"
                + (f" — try {event.attempt}…" if event.attempt > 1 else "…"),
                key="reconnect",
            )
        elif isinstance(event, Reconnected):
            tries = f" after {event.attempt} tries" if event.attempt > 1 else ""
            self.transcript.add_notice(f"connection lost, then reconnected{tries}", key="reconnect")
            self.transcript.end_notice("reconnect")
        elif isinstance(event, ErrorEvent):
            if event.code in ("key_rejected", "network", "rate_limited") or event.fatal:
                self.vapp.run_health_checks(self._provider or None)  # no stale "ok"
            self.transcript.end_notice("reconnect")
            self._last_error = event.message
            self.transcript.add_notice(event.message, error=True)
            self.app.notify(
                event.message,
                title=event.code.replace("_", " "),
                severity="error" if event.fatal else "warning",
                timeout=10,
            )
        elif isinstance(event, SessionWarning):
            if event.code == BARGE_IN_REFUSED:
                # said once per session on screen, not a toast per attempt
                if not self._barge_in_refused_shown:
                    self._barge_in_refused_shown = True
                    self.transcript.add_notice(BARGE_IN_REFUSED_TEXT)
                return
            self.app.notify(event.message, severity="warning", timeout=8)
        elif isinstance(event, SessionEnded):
            # the final error was just shown: do not repeat it as the reason
            reason = "" if event.reason == self._last_error else f": {event.reason}"
            self.transcript.end_notice("reconnect")
            self.transcript.add_notice(f"session ended{reason} — press n for a new one")
        else:
            self.transcript.apply(event)

    @on(SessionStopped)
    def _on_session_stopped(self, message: SessionStopped) -> None:
        badge = self.query_one(StateBadge)
        if message.error:
            badge.set_state(State.ERROR)
            self.query_one(SessionLine).show_note(
                short_provider(self._provider), "not connected — press n to retry"
            )
            self.transcript.add_notice(message.reason, error=True)
            self.app.notify(
                message.reason, title="Session not started", severity="error", timeout=12
            )
        elif badge.state is not State.ERROR:
            badge.set_state(State.ENDED)
        self.query_one("#mic-meter", LevelMeter).set_level(-120.0)
        self.query_one("#spk-meter", LevelMeter).set_level(-120.0)

    @on(HealthUpdated)
    def _on_health(self, message: HealthUpdated) -> None:
        self.query_one(HealthLine).show(self.vapp.health.values())

    def health_checking(self) -> None:
        """A health check started: the line says so until the results land."""
        self.query_one(HealthLine).show(self.vapp.health.values(), checking=True)

    # --- keys ------------------------------------------------------------------------------

    def _engine_or_hint(self) -> bool:
        if self.vapp.engine is not None:
            return True
        hint = self.vapp.session_error or "no live session"
        self.app.notify(f"{hint} — press n to start a session", severity="warning", timeout=5)
        return False

    def action_talk(self) -> None:
        """Space: start talking, Space again: stop and send (no key-release in terminals)."""
        engine = self.vapp.engine
        if engine is not None or self._engine_or_hint():
            assert engine is not None
            if engine.muted and not engine.talking:
                # a turn from a muted mic would be silence sent to the provider
                self.app.notify("the microphone is muted — press m to unmute", timeout=3)
                return
            self.vapp.engine_command("talk", engine.toggle_talk)

    def action_interrupt(self) -> None:
        """Cut the assistant's reply short."""
        engine = self.vapp.engine
        if engine is not None:
            self.vapp.engine_command("interrupt", engine.interrupt)

    def action_mute(self) -> None:
        """Mute or unmute the microphone."""
        engine = self.vapp.engine
        if engine is None:
            self._engine_or_hint()
            return
        engine.set_muted(not engine.muted)
        self.query_one("#mic-meter", LevelMeter).muted = engine.muted
        self.app.notify("microphone muted" if engine.muted else "microphone on", timeout=2)

    def action_new_conversation(self) -> None:
        """End the session and start a fresh one with an empty transcript."""
        self.transcript.clear()
        self._show_latency(None)
        self.vapp.start_session(reason="new conversation")

    def action_settings(self) -> None:
        self.vapp.open_settings()

    def action_keys(self) -> None:
        self.vapp.open_keys()

    def action_health(self) -> None:
        self.vapp.open_health()

    def action_theme(self) -> None:
        self.vapp.open_theme_picker()


def plain_reason(reason: str) -> str:
    """A reconnect reason in plain words (known jargon translated, else as given)."""
    low = reason.lower()
    for jargon, plain in _PLAIN_REASONS:
        if jargon in low:
            return plain
    return reason


def short_provider(spec_key: str) -> str:
    """``ai-voice-conv.openai`` -> ``openai``."""
    return spec_key.rsplit(".", 1)[-1]
