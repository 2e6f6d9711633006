"""The provider seam: a provider is one package that declares everything about itself.

The engine owns audio, turn state, the transcript store, usage and latency; a provider owns
the connection to its service. A provider session receives mic frames and commands from the
engine, and reports what happens through ``ctx.emit`` (typed events from
:mod:`voicetui.engine.events`) and ``ctx.playback`` (assistant audio).

A :class:`Provider` object declares its integration spec (key, alias, env var), its options
beyond the spec (JSON Schema and default of each), its health probe, preload, voices and
session adapter. Packages publish one in the ``voicetui.providers`` entry-point group
(:mod:`voicetui.providers.registry`), so a third provider is one installable package and no
edit anywhere else.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from voicetui.audio.ports import AudioOutput, BargeInGate, CaptureFrame
from voicetui.engine.events import Event
from voicetui.engine.replies import Reply, ReplyLedger
from voicetui.specs.model import SpecSource

TurnDetection = Literal["server_vad", "push_to_talk"]
OnMaxDuration = Literal["rollover", "end"]


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
    # at max_session_duration_s: continue in a fresh, seeded provider session, or end
    on_max_duration: OnMaxDuration = "rollover"


class ProviderError(Exception):
    """A failure the user must hear about. ``str(err)`` is one line saying what to do.

    ``code``: "key_rejected" (never retried), "rate_limited", "network", "protocol",
    "server", "config". ``retryable`` says whether backoff and retry make sense.
    """

    def __init__(self, message: str, *, code: str = "error", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


async def keep_key(rejected: ProviderError) -> None:
    """The default :attr:`SessionContext.refresh_key`: there is no other key."""
    raise rejected


@dataclass(slots=True)
class SessionContext:
    """What the engine hands a provider session.

    ``api_key`` is the key to connect with *now*: read it at every connect, never keep a
    copy. When the service rejects it (``key_rejected``) while (re)connecting, ``await
    ctx.refresh_key(err)`` once before giving up: it returns when ``api_key`` holds a fresh
    key to retry with, and raises the :class:`ProviderError` to end the session with when
    there is none (a key not from a command, a command that fails or gives the same key,
    a fresh key rejected too). It never blocks the loop (the command runs in a thread).
    """

    settings: ProviderSettings
    api_key: str
    emit: Callable[[Event], None]
    playback: AudioOutput
    gate: BargeInGate
    state_dir: Path
    replies: ReplyLedger  # reply audio and text go through here, never to playback directly
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("voicetui.provider"))
    # Scopes turn ids to this session: a console that restarts its session appends new
    # turns instead of rewriting the earlier ones (``u1`` of the second session is not
    # ``u1`` of the first).
    session_id: str = ""
    refresh_key: Callable[[ProviderError], Awaitable[None]] = keep_key
    _turn_numbers: Iterator[int] = field(
        default_factory=lambda: itertools.count(1), init=False, repr=False
    )

    def new_turn_id(self, prefix: str) -> str:
        """A turn or reply id unique across sessions: ``<session id>/<prefix><n>``."""
        n = next(self._turn_numbers)
        return f"{self.session_id}/{prefix}{n}" if self.session_id else f"{prefix}{n}"


class ProviderSession(Protocol):
    """One live conversation with a provider. All methods run on the engine's event loop.

    Turn and reply ids in events must be unique across sessions (the console appends rows by
    id): take them from ``ctx.new_turn_id(prefix)``, or use ids the service makes unique.
    """

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


class RenewableSession(ProviderSession, Protocol):
    """A session that can continue the conversation in a fresh provider session (the
    session-limit rollover, :mod:`voicetui.engine.rollover`). Optional: the engine ends at
    the limit when a provider does not implement it."""

    async def renew(self) -> str:
        """Between turns: open a new provider session seeded with the conversation so far,
        then retire the old one, so no audio or transcript line is lost. Returns how it was
        seeded (``"items"``, ``"summary"``, ``"conversation"``); raises
        :class:`ProviderError` when it could not (the old session is still usable then)."""
        ...


@dataclass(frozen=True, slots=True)
class Voice:
    id: str
    name: str
    languages: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class ProviderOption:
    """An option a provider takes beyond its spec's ``configSchema``: the default used when
    the config says nothing, and the JSON Schema the config value must satisfy."""

    default: Any
    schema: Mapping[str, Any]


class ProbeFailure(Exception):
    """What a health probe raises when the service is not usable. ``status`` is one of
    :data:`voicetui.health.STATUSES`; ``detail`` is one line, never containing the key."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Provider(Protocol):
    """What a provider package publishes in the ``voicetui.providers`` entry-point group.

    Importing the object must not import an SDK: listing providers (``specs list``, the
    settings screen) loads every one of them.
    """

    @property
    def source(self) -> SpecSource:
        """The integration spec with its alias and API-key environment variable."""
        ...

    @property
    def spec_key(self) -> str: ...

    @property
    def options(self) -> Mapping[str, ProviderOption]:
        """Options beyond the spec (name -> default and JSON Schema)."""
        ...

    @property
    def preference(self) -> int:
        """Which provider a config without ``provider`` selects: the lowest wins."""
        ...

    @property
    def distributions(self) -> tuple[str, ...]:
        """The SDK distributions it speaks through (``voicetui --version`` lists them)."""
        ...

    def create_session(self, ctx: SessionContext) -> ProviderSession: ...

    def preload(self) -> None:
        """Import what connecting needs (the SDK takes about a second). Blocking: the app
        calls it from a thread so the first connect does not stall its event loop. A
        missing SDK is not an error here: connecting reports it in one line."""
        ...

    async def list_voices(self, settings: ProviderSettings, api_key: str) -> list[Voice]:
        """Voices for the settings picker (from the service when it has a list)."""
        ...

    async def probe(self, base_url: str, api_key: str, timeout_ms: int) -> str:
        """One cheap authenticated call; returns a one-line detail (``"12 models listed"``)
        or raises :class:`ProbeFailure`. The caller bounds it by ``timeout_ms``."""
        ...


def import_quietly(*modules: str) -> None:
    """Import ``modules`` in order, stopping quietly at the first that is missing."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return


def get_provider(spec_key: str) -> Provider:
    """The provider implementing ``spec_key`` (see :mod:`voicetui.providers.registry`)."""
    from voicetui.providers.registry import load_provider

    return load_provider(spec_key)
