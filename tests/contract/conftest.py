"""The provider contract: one set of behaviours every provider must show, run against each
provider's loopback emulator with the real SDK and the real conversation engine.

A :class:`Side` holds what differs per provider — which emulator, which settings, how its
fault knobs are turned — and nothing about *what* is checked: the tests in this package are
written once and run unchanged for every provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.ports import DuplexPolicy
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.engine.events import AssistantAudio, AssistantTextFinal, Event, UserTranscript
from voicetui.engine.session import ConversationEngine
from voicetui.providers.base import Provider, ProviderSettings, TurnDetection
from voicetui.testing.emulators.common import Script, Turn

PROVIDERS = ["openai", "mistral"]


@dataclass
class Side:
    """One provider as the contract tests see it."""

    name: str
    spec_key: str
    emu: Any
    provider: Provider
    extras: dict[str, Any] = field(default_factory=dict)

    def script(self, *turns: Turn) -> None:
        self.emu.script = Script(turns=list(turns))

    def settings(self, mode: TurnDetection) -> ProviderSettings:
        return ProviderSettings(
            spec_key=self.spec_key,
            model="gpt-realtime" if self.name == "openai" else "mistral-small-latest",
            voice="marin" if self.name == "openai" else "default",
            turn_detection=mode,
            max_session_duration_s=600,
            base_url=self.emu.base_url,
            instructions="Be brief.",
            extras=dict(self.extras),
        )

    # --- the emulators' pace: generation faster than real time, as the services do --------
    def realistic_pace(self) -> None:
        self.emu.timing.token_interval_s = 0.02
        self.emu.timing.audio_pace = 4.0

    # --- fault knobs --------------------------------------------------------------------------
    def arm_drop_mid_reply(self, engine: ConversationEngine) -> None:
        """The reply's stream dies once its first audio has arrived."""
        if self.name == "openai":
            fired: list[bool] = []

            def drop(event: Event) -> None:
                if isinstance(event, AssistantAudio) and not fired:
                    fired.append(True)
                    asyncio.get_running_loop().create_task(_drop_openai(self.emu))

            engine.subscribe(drop)
        else:
            self.emu.fault_scope = "/v1/conversations"
            self.emu.faults.drop_after_events = 8  # started + 7 words, then the body is cut

    def arm_malformed_mid_reply(self) -> None:
        """One frame of the reply's stream is not valid JSON."""
        if self.name == "openai":
            self.emu.faults.malformed_after_events = 16
        else:
            self.emu.fault_scope = "/v1/conversations"
            self.emu.sse_malformed_json = True
            self.emu.faults.malformed_after_events = 4

    def reject_key(self) -> None:
        if self.name == "openai":
            self.emu.faults.ws_reject_status = 401
            self.emu.faults.ws_reject_count = 5
        else:
            self.emu.fault_scope = "/v1/agents"
            self.emu.faults.http_status = 401
            self.emu.faults.http_status_count = 5

    def rate_limit_once(self) -> None:
        """One 429 on the way to the first reply, then normal service."""
        if self.name == "openai":
            self.emu.faults.ws_reject_status = 429
            self.emu.faults.ws_reject_count = 1
        else:
            self.emu.fault_scope = "/v1/conversations"
            self.emu.faults.http_status = 429
            self.emu.faults.http_status_count = 1
            self.emu.faults.retry_after_s = 0.2

    def never_reply(self) -> None:
        """The service never produces the reply (fails every time it is asked)."""
        if self.name == "openai":
            self.emu.fail_responses = 10
        else:
            self.emu.fault_scope = "/v1/conversations"
            self.emu.faults.http_status = 503
            self.emu.faults.http_status_count = 50

    def spoken_pieces(self, reply: str) -> list[str]:
        """How the emulator voices ``reply``: one synthesis per piece, in order."""
        if self.name == "openai":
            return [reply]
        from voicetui.providers.mistral.chunker import TextChunker
        from voicetui.testing.emulators.mistral_stream import word_pieces

        chunker = TextChunker()
        pieces = [p for delta in word_pieces(reply) for p in chunker.feed(delta)]
        rest = chunker.flush()
        return [p.strip() for p in [*pieces, rest or ""] if p.strip()]

    def told_after_cut(self) -> str | None:
        """What the service now holds of the cut reply (OpenAI: the truncated item), or
        what the next turn told it was heard (Mistral)."""
        if self.name == "openai":
            transcripts = self.emu.sessions[-1].assistant_transcripts
            return str(transcripts[0]) if transcripts else None
        for history in self.emu.conversations.values():
            for entry in history:
                text = str(entry.get("content", ""))
                if entry.get("role") == "user" and "heard only" in text:
                    return text.split('"')[1]
        return None


async def _drop_openai(emu: Any) -> None:
    from voicetui.testing.emulators.openai import _Closed

    with contextlib.suppress(_Closed):  # drop() ends the emulator's socket handler
        await emu.sessions[-1].drop(1011)


@dataclass
class Run:
    events: list[Event]
    engine: ConversationEngine
    out_wav: Path

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def lines(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for e in self.events:
            if isinstance(e, UserTranscript) and e.final and not e.relabel:
                out.append(("user", e.text))
            elif isinstance(e, AssistantTextFinal):
                out.append(("assistant", e.text))
        return out

    def audio(self) -> np.ndarray:
        return read_wav_mono(self.out_wav) if self.out_wav.exists() else np.zeros(0, np.float32)


@pytest_asyncio.fixture(params=PROVIDERS)
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    """Each provider in turn, with its strict emulator serving in the test's loop."""
    if request.param == "openai":
        from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
        from voicetui.testing.emulators.openai import OpenAIEmulator

        emu: Any = OpenAIEmulator(strict=True)
        provider: Provider = OpenAIRealtimeProvider(reconnect_base_delay_s=0.05)
        s = Side("openai", "ai-voice-conv.openai", emu, provider, {"silenceDurationMs": 300})
    else:
        from voicetui.providers.mistral import PROVIDER
        from voicetui.testing.emulators.mistral import MistralEmulator

        emu = MistralEmulator(strict=True)
        s = Side("mistral", "ai-voice-conv.mistral", emu, PROVIDER, {"diarize": False})
    await emu.start()
    yield s
    await emu.stop()
    problems = [
        *getattr(emu, "violations", []),
        *getattr(emu, "client_violations", []),
        *getattr(emu, "internal_errors", []),
    ]
    assert not problems, f"emulator fidelity problems: {problems[:5]}"


@pytest.fixture
def converse() -> Callable[..., Any]:
    """``await converse(side, tmp_path, mode, pcm, realtime=..., arm=...)`` -> Run."""
    return _converse


async def _converse(
    side: Side,
    tmp_path: Path,
    mode: TurnDetection,
    pcm: np.ndarray,
    *,
    realtime: bool = False,
    limit_s: float = 60.0,
    arm: Callable[[ConversationEngine], None] | None = None,
) -> Run:
    """A ``voicetui talk``-like session: WAV mic → engine + provider → WAV speaker (real
    time when ``realtime``: then the speaker's own clock says what has played)."""
    wav_in, wav_out = tmp_path / "q.wav", tmp_path / "a.wav"
    write_wav_pcm16(wav_in, pcm)
    rig = open_audio(
        AudioOptions(duplex=DuplexPolicy.FULL),
        input_wav=wav_in,
        output_wav=wav_out,
        realtime_input=realtime,
    )
    engine = ConversationEngine(
        provider=side.provider,
        settings=side.settings(mode),
        api_key="sk-test",
        audio_in=rig.input,
        audio_out=rig.output,
        gate=rig.gate,
        state_dir=tmp_path / "state",
        end_when_input_ends=True,
        talk_on_connect=mode == "push_to_talk",
        reply_timeout_s=20.0,
    )
    run = Run(events=[], engine=engine, out_wav=wav_out)
    engine.subscribe(run.events.append)
    if arm is not None:
        arm(engine)
    async with asyncio.timeout(limit_s):
        await engine.run()
    return run
