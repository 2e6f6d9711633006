"""The provider seam: one module per provider behind one small protocol.

The engine owns audio, turn state, the transcript store, usage and latency; a provider owns
the connection to its service. A provider session receives mic frames and commands from the
engine, and reports what happens through ``ctx.emit`` (typed events from
:mod:`voicetui.engine.events`) and ``ctx.playback`` (assistant audio). A third provider (a
self-hosted OpenAI-compatible endpoint, say) is one new module registered in
:data:`PROVIDER_MODULES`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from voicetui.audio.ports import AudioOutput, BargeInGate, CaptureFrame
from voicetui.engine.events import Event
from voicetui.engine.replies import Reply, ReplyLedger

TurnDetection = Literal["server_vad", "push_to_talk"]


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """Everything a provider needs from the validated config, resolved against its spec."""

    spec_key: str  # "ai-voice-conv.openai"
    model: str
    voice: str
    turn_detection: TurnDetection
    max_session_duration_s: float
    base_url: str  # scheme://host:port, no /v1
    instructions: str = (
        "You are a helpful voice assistant. Keep replies short and conversational, "
        "with no markdown."
    )
    extras: Mapping[str, Any] = field(default_factory=dict)  # provider-specific options


class ProviderError(Exception):
    """A failure the user must hear about. ``str(err)`` is one line saying what to do.

    ``code``: "key_rejected" (never retried), "rate_limited", "network", "protocol",
    "server", "config". ``retryable`` says whether backoff and retry make sense.
    """

    def __init__(self, message: str, *, code: str = "error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(slots=True)
class SessionContext:
    """What the engine hands a provider session."""

    settings: ProviderSettings
    api_key: str
    emit: Callable[[Event], None]
    playback: AudioOutput
    gate: BargeInGate
    state_dir: Path
    replies: ReplyLedger  # reply audio and text go through here, never to playback directly
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("voicetui.provider"))


class ProviderSession(Protocol):
    """One live conversation with a provider. All methods run on the engine's event loop."""

    async def connect(self) -> None:
        """Open the connection(s); raise :class:`ProviderError` (``key_rejected`` on 401)."""
        ...

    async def run(self) -> None:
        """Receive loop: returns when closed; reconnects itself where the protocol allows,
        emitting Reconnecting/Reconnected; raises ProviderError when it gives up."""
        ...

    async def send_audio(self, frame: CaptureFrame) -> None:
        """A mic frame (24 kHz int16). The engine sends only what the turn mode allows."""
        ...

    async def start_user_turn(self) -> None:
        """Push-to-talk pressed: interrupt the assistant if audible, start a new user turn."""
        ...

    async def end_user_turn(self) -> None:
        """Push-to-talk released: commit the turn (never less than 100 ms) and ask for a reply."""
        ...

    async def interrupt(self) -> None:
        """Interrupt key: cancel the reply, flush playback, tell the service what was heard."""
        ...

    async def cancel(self, reply: Reply, heard_ms: int, heard_text: str) -> None:
        """The engine cut ``reply`` (its line is already final with ``heard_text``): stop
        generating it and make the service's context hold only what was heard."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name: str
    languages: tuple[str, ...] = ()
    description: str = ""


class Provider(Protocol):
    spec_key: str

    def create_session(self, ctx: SessionContext) -> ProviderSession: ...

    def preload(self) -> None:
        """Import what connecting needs (the SDK takes about a second). Blocking: the app
        calls it from a thread so the first connect does not stall its event loop. A
        missing SDK is not an error here: connecting reports it in one line."""
        ...

    async def list_voices(self, settings: ProviderSettings, api_key: str) -> list[Voice]:
        """Voices for the settings picker (from the service when it has a list)."""
        ...


# spec key -> module exposing ``PROVIDER: Provider``; imported lazily so that a subcommand
# touching one provider never imports the other's SDK.
PROVIDER_MODULES: dict[str, str] = {
    "ai-voice-conv.openai": "voicetui.providers.openai",
    "ai-voice-conv.mistral": "voicetui.providers.mistral",
}


def import_quietly(*modules: str) -> None:
    """Import ``modules`` in order, stopping quietly at the first that is missing."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return


def get_provider(spec_key: str) -> Provider:
    """The provider implementing ``spec_key``."""
    try:
        module_name = PROVIDER_MODULES[spec_key]
    except KeyError:
        raise ProviderError(f"no provider implements {spec_key!r}", code="config") from None
    provider: Provider = importlib.import_module(module_name).PROVIDER
    return provider
