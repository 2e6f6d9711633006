"""Typed events flowing one way: from the engine (and providers) to listeners.

Listeners are the Textual app, the transcript store and the CLI printer. Nothing here
imports Textual; every event is a frozen dataclass so it can cross threads safely and be
serialised to JSONL with :func:`event_to_dict`.

Providers emit the *provider-level* events (transcripts, assistant deltas, audio, tool
activity, usage, speech boundaries, errors). The engine derives and emits the
*session-level* ones (state changes, latency, warnings, session end).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal


class State(StrEnum):
    """Conversation state shown in the status bar."""

    IDLE = "idle"
    CONNECTING = "connecting"
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    ASSISTANT_SPEAKING = "assistant_speaking"
    INTERRUPTED = "interrupted"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    ERROR = "error"


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every engine event. ``at`` is ``time.monotonic()`` when it was created."""

    at: float = field(default_factory=_now)

    @property
    def kind(self) -> str:
        return type(self).__name__


# --- session level (emitted by the engine) -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    state: State
    previous: State
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(Event):
    provider: str  # spec key
    model: str
    voice: str
    turn_detection: str
    session_id: str  # the transcript file's id
    max_duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionWarning(Event):
    """Non-fatal heads-up, e.g. 90 % of maxSessionDurationSeconds used."""

    message: str
    code: str = "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(Event):
    reason: str  # one line for the user: "max session duration reached (600 s)", "ended by user"
    code: Literal["user", "max_duration", "error", "provider_closed", "input_finished"] = "user"


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnLatency(Event):
    """Per-turn waterfall, milliseconds from the end of the user's speech (None = not seen)."""

    turn_id: str
    final_transcript_ms: float | None
    first_text_ms: float | None
    first_audio_ms: float | None  # first assistant sample handed to the output device


# --- provider level (emitted by a provider session) ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSpeechStarted(Event):
    """The user started speaking (server VAD, turn.start, or the talk key)."""

    turn_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserSpeechStopped(Event):
    """End of the user's speech: the latency waterfall starts here."""

    turn_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTranscript(Event):
    """The user's words. Partials carry the text so far; a final replaces them.

    A later final with the same ``turn_id`` and ``segment_index`` replaces an earlier one
    (that is how diarized relabelling arrives: ``relabel=True``).
    """

    turn_id: str
    text: str
    final: bool
    speaker: str | None = None  # "speaker_1"
    start: float | None = None  # seconds from the start of the turn's audio
    end: float | None = None
    segment_index: int = 0
    relabel: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantTextDelta(Event):
    turn_id: str  # the assistant item / reply id
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantTextFinal(Event):
    turn_id: str
    text: str  # what the user heard when interrupted (truncated), else the whole reply
    interrupted: bool = False
    reason: str = ""  # why a reply was lost (a fault), "" for a complete or user-cut reply


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantAudio(Event):
    """A chunk of assistant audio was queued for playback (mono, 24 kHz)."""

    turn_id: str
    samples: int
    sample_rate: int = 24_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantDone(Event):
    """The provider finished generating the reply (audio may still be playing)."""

    turn_id: str
    status: Literal["completed", "cancelled", "failed", "incomplete"] = "completed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupted(Event):
    """A reply was cut short (barge-in or the interrupt key)."""

    turn_id: str
    played_ms: int
    by: Literal["barge_in", "user_key"] = "barge_in"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolActivity(Event):
    turn_id: str
    name: str  # "web_search"
    status: Literal["started", "done", "failed"]
    detail: str = ""  # "searching the web…", the query

    @property
    def label(self) -> str:
        return self.detail or f"{self.name} {self.status}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage(Event):
    """Usage of one response or request, in the provider's units; the store adds it up."""

    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    audio_seconds: float = 0.0
    requests: int = 1
    rate_limits: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting(Event):
    attempt: int
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected(Event):
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(Event):
    """Something went wrong. ``message`` is one line for the user saying what to do."""

    message: str
    code: str = "error"  # "key_rejected", "rate_limited", "device", "network", "protocol"
    fatal: bool = False


# The events the transcript store writes (and fsyncs) as they arrive.
FINAL_EVENTS: tuple[type[Event], ...] = (
    SessionStarted,
    SessionEnded,
    TurnLatency,
    AssistantTextFinal,
    Interrupted,
    ToolActivity,
    Usage,
    ErrorEvent,
)


def is_final(event: Event) -> bool:
    """True for events that must be on disk before anything else happens."""
    if isinstance(event, UserTranscript):
        return event.final
    return isinstance(event, FINAL_EVENTS)


def event_to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready dict: ``{"type": "UserTranscript", ...fields}``."""
    data = dataclasses.asdict(event)
    data["type"] = event.kind
    for key, value in data.items():
        if isinstance(value, StrEnum):
            data[key] = value.value
    return data
