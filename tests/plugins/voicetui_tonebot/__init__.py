"""A third provider from outside voicetui, for the provider-seam tests: ``example.tonebot``.

It is one package, registered only through an entry point in the ``voicetui.providers``
group (the tests write that entry point into a ``*.dist-info`` on ``sys.path``). Its session
is small but real: it counts the audio it receives, and at the end of each user turn reports
that duration as the user's line and answers with a fixed line spoken as a tone at the
voice's pitch. The reply goes through the engine's reply ledger (``ctx.replies``: the text
it speaks, its audio, "generation done"), which plays it, makes its final line once played
out, and calls :meth:`TonebotSession.cancel` when the user cuts it. Its health probe opens a
TCP connection to ``baseUrl``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from voicetui.audio.ports import ENGINE_RATE, CaptureFrame
from voicetui.engine.events import UserSpeechStarted, UserSpeechStopped, UserTranscript
from voicetui.engine.replies import Reply
from voicetui.providers.base import (
    ProbeFailure,
    ProviderError,
    ProviderOption,
    ProviderSettings,
    SessionContext,
    Voice,
)
from voicetui.specs.model import (
    AuthMethod,
    ByokSetup,
    Capabilities,
    CapabilityRef,
    HealthCheck,
    IntegrationSpec,
    Meta,
    SchemaWithExample,
    SpecSource,
    Stability,
    Transport,
)

SPEC_KEY = "example.tonebot"
ENV_VAR = "VOICETUI_TONEBOT_KEY"
VOICES = {"low": 330.0, "high": 660.0}  # voice -> tone pitch (Hz)

SPEC = IntegrationSpec(
    meta=Meta(
        key=SPEC_KEY,
        version="0.1.0",
        category="ai-voice-conversational",
        title="Tonebot",
        description="A test provider that answers every turn with a tone and a fixed line.",
        domain="testing",
        owners=("voicetui tests",),
        tags=("test",),
        stability=Stability.EXPERIMENTAL,
    ),
    supported_modes=("managed",),
    transports=(Transport(type="rest", base_url="http://127.0.0.1:9"),),
    preferred_transport="rest",
    supported_auth_methods=(AuthMethod(type="api-key", header_name="X-Key", prefix=""),),
    capabilities=Capabilities(provides=(CapabilityRef(key="ai.voice.conversation", version="1"),)),
    config_schema=SchemaWithExample(
        schema={
            "type": "object",
            "properties": {
                "model": {"type": "string", "description": "the bot model"},
                "defaultVoice": {"type": "string", "enum": list(VOICES)},
                "turnDetection": {"type": "string", "enum": ["push_to_talk"]},
                "maxSessionDurationSeconds": {"type": "number"},
            },
        },
        example={
            "model": "tonebot-1",
            "defaultVoice": "low",
            "turnDetection": "push_to_talk",
            "maxSessionDurationSeconds": 120,
        },
    ),
    secret_schema=SchemaWithExample(
        schema={
            "type": "object",
            "required": ["apiKey"],
            "properties": {"apiKey": {"type": "string", "description": "any token"}},
        },
        example={"apiKey": "tonebot-key"},
    ),
    health_check=HealthCheck(method="custom", timeout_ms=2000),
    docs_url="https://example.invalid/tonebot",
    byok_setup=ByokSetup(setup_instructions="Any token will do."),
)
SOURCE = SpecSource(
    spec=SPEC,
    export_name="tonebotSpec",
    module_file="tests/plugins/voicetui_tonebot/__init__.py",
    alias="tonebot",
    api_key_env=ENV_VAR,
)
OPTIONS = {
    "line": ProviderOption("Beep boop, I heard you.", {"type": "string", "minLength": 1}),
    "toneMs": ProviderOption(600, {"type": "integer", "minimum": 50, "maximum": 5000}),
}


def tone(hz: float, ms: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    """``ms`` of a sine at ``hz``, half scale, 24 kHz int16."""
    t = np.arange(int(ENGINE_RATE * ms / 1000)) / ENGINE_RATE
    return (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


class TonebotSession:
    """Push-to-talk only: a turn's audio is counted, the reply is a tone plus a line."""

    def __init__(self, ctx: SessionContext) -> None:
        self.ctx = ctx
        self._closed = asyncio.Event()
        self._turn: str | None = None
        self._samples = 0
        self.cancelled: list[tuple[str, int, str]] = []  # (reply id, heard ms, heard text)

    async def connect(self) -> None:
        if not self.ctx.api_key.strip():
            raise ProviderError("tonebot needs a key", code="key_rejected")

    async def run(self) -> None:
        await self._closed.wait()

    async def send_audio(self, frame: CaptureFrame) -> None:
        self._samples += len(frame.pcm)

    async def start_user_turn(self) -> None:
        self._turn, self._samples = self.ctx.new_turn_id("u"), 0
        self.ctx.emit(UserSpeechStarted(turn_id=self._turn))

    async def end_user_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        self.ctx.emit(UserSpeechStopped(turn_id=turn))
        heard = f"[{self._samples / ENGINE_RATE:.1f} s of audio]"
        self.ctx.emit(UserTranscript(turn_id=turn, text=heard, final=True))
        extras = self.ctx.settings.extras
        line = str(extras.get("line", OPTIONS["line"].default))
        pcm = tone(VOICES.get(self.ctx.settings.voice, 440.0), int(extras.get("toneMs", 600)))
        ledger = self.ctx.replies
        reply = ledger.open(self.ctx.new_turn_id("a"), turn_id=turn)
        ledger.show(reply, line)
        ledger.speak(reply, line, own_audio=True)
        ledger.audio(reply, pcm)
        ledger.piece_done(reply)
        ledger.generated(reply)

    async def interrupt(self) -> None:
        """Unused: the ledger cuts the reply and calls :meth:`cancel`."""

    async def cancel(self, reply: Reply, heard_ms: int, heard_text: str) -> None:
        """Nothing is generating any more; a service would be told what was heard."""
        self.cancelled.append((reply.id, heard_ms, heard_text))

    async def close(self) -> None:
        self._closed.set()


class Tonebot:
    """The ``PROVIDER`` this package publishes."""

    spec_key = SPEC_KEY
    preference = 100
    distributions = ("numpy",)

    @property
    def source(self) -> SpecSource:
        return SOURCE

    @property
    def options(self) -> Mapping[str, ProviderOption]:
        return OPTIONS

    def create_session(self, ctx: SessionContext) -> TonebotSession:
        return TonebotSession(ctx)

    def preload(self) -> None:
        """Nothing to import."""

    async def list_voices(self, settings: ProviderSettings, api_key: str) -> list[Voice]:
        return [Voice(id=v, name=f"{v} ({hz:g} Hz)") for v, hz in VOICES.items()]

    async def probe(self, base_url: str, api_key: str, timeout_ms: int) -> str:
        """Open (and close) a TCP connection to ``baseUrl``."""
        parts = urlsplit(base_url)
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        except OSError as err:
            raise ProbeFailure("unreachable", f"cannot connect to {base_url}: {err}") from None
        writer.close()
        await writer.wait_closed()
        return f"connected in {(time.perf_counter() - started) * 1000:.0f} ms"


PROVIDER = Tonebot()
