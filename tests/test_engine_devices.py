"""The engine on the live path the console uses: the virtual microphone and speaker
(PulseAudio sandbox), the echo-gated duplex policy, the real SDK against the emulator."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.ports import ENGINE_RATE, DuplexPolicy
from voicetui.audio.wav import read_wav_mono
from voicetui.engine.events import (
    AssistantTextFinal,
    ErrorEvent,
    Event,
    UserSpeechStarted,
    UserTranscript,
)
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore
from voicetui.providers.base import ProviderSettings
from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
from voicetui.testing.emulators.common import Turn, speech_like_pcm
from voicetui.testing.emulators.openai import OpenAIEmulator

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(60)]


def run_quiet(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True)


async def test_live_devices_server_vad_turn(
    openai_emulator: OpenAIEmulator, audio_sandbox: Path, live_exchange: Any, tmp_path: Path
) -> None:
    emu = openai_emulator
    emu.script.turns = [Turn(user_text="Hello there.", reply="Hello, I hear you fine.")]
    speech = tmp_path / "speech.wav"
    run_quiet(["bash", str(audio_sandbox), "speech", "Hello there, can you hear me?", str(speech)])
    rig = open_audio(
        AudioOptions(input_device="pulse", output_device="pulse", duplex=DuplexPolicy.GATED)
    )
    settings = ProviderSettings(
        spec_key="ai-voice-conv.openai", model="gpt-realtime", voice="marin",
        turn_detection="server_vad", max_session_duration_s=600, base_url=emu.base_url,
        extras={"silenceDurationMs": 400},
    )  # fmt: skip
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-test",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate,
        store=TranscriptStore(tmp_path / "t"),
    )  # fmt: skip
    events: list[Event] = []
    engine.subscribe(events.append)
    recording = tmp_path / "speaker.wav"
    exchange = live_exchange(engine, events, rig.output, speech, recording, done=AssistantTextFinal)
    task = asyncio.create_task(exchange)
    ended = await engine.run()
    await task

    assert ended.code == "user", [e for e in events if isinstance(e, ErrorEvent)]
    assert any(isinstance(e, UserSpeechStarted) for e in events)  # the server VAD heard it
    finals = [e.text for e in events if isinstance(e, UserTranscript) and e.final]
    assert finals == ["Hello there."]
    (reply,) = [e for e in events if isinstance(e, AssistantTextFinal)]
    assert reply.text == "Hello, I hear you fine." and not reply.interrupted
    # what the mic captured went out: at least the spoken clip's length
    assert emu.log.audio_bytes_received() >= len(read_wav_mono(speech)) * 2
    # the reply really came out of the virtual speaker, all of it
    played = np.count_nonzero(np.abs(read_wav_mono(recording)) > 1e-3) / ENGINE_RATE
    expected = len(speech_like_pcm("Hello, I hear you fine.")) / ENGINE_RATE
    assert played == pytest.approx(expected, abs=0.35)  # word gaps are silent in both
