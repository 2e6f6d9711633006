"""End-to-end flows of the console against the emulators, with the real virtual devices.

Every test drives the real app (``App.run_test``) with real SDKs talking to the loopback
emulators; the microphone is fed with ``paplay`` into the private PulseAudio's ``vmic_feed``
and the speaker is recorded from ``vspeaker.monitor``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_tui_support import (
    OPENAI,
    SpeakerRecorder,
    play_into_mic,
    speech_wav,
    wait_until,
    write_config,
)
from voicetui.engine.events import State
from voicetui.testing.emulators.common import Script, Turn
from voicetui.tui.app import VoiceTuiApp
from voicetui.tui.widgets.transcript import TranscriptView

pytestmark = [pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(90)]


def transcript_text(app: VoiceTuiApp) -> str:
    return "\n".join(app.console_screen.query_one(TranscriptView).plain_lines())


async def test_push_to_talk_turn_openai_with_speaker_labels(
    openai_emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audio_sandbox: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-tui-0000000000000000")
    openai_emulator.script = Script(
        turns=[Turn(user_text="hello there", reply="Hi! Nice to hear you today.")]
    )
    openai_emulator.timing.audio_pace = 1.0
    cfg = write_config(
        tmp_path / "config.toml",
        provider=OPENAI,
        providers={
            OPENAI: {
                "baseUrl": openai_emulator.base_url,
                "turnDetection": "push_to_talk",
                "transcriptionModel": "gpt-4o-transcribe-diarize",
            }
        },
    )
    clip = speech_wav(tmp_path / "hello.wav", "hello there")
    app = VoiceTuiApp(cfg, health_on_start=False)
    with SpeakerRecorder(tmp_path / "speaker.raw") as speaker:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(
                lambda: app.engine is not None and app.engine.state == State.LISTENING
                or (app.engine is not None and app.engine.state == State.IDLE),
                timeout=15,
                what="session live",
            )
            await pilot.press("space")
            await wait_until(lambda: app.engine is not None and app.engine.talking, 5, "talking")
            await play_into_mic(clip)
            await pilot.press("space")
            await wait_until(
                lambda: "Nice to hear you today" in transcript_text(app), 20, "assistant reply"
            )
            await wait_until(
                lambda: app.engine is not None and app.engine.state == State.LISTENING
                or (app.engine is not None and app.engine.state == State.IDLE),
                timeout=20,
                what="reply played",
            )
            text = transcript_text(app)
            assert "speaker_1" in text and "hello there" in text, text
            assert "->" in text  # the [start -> end] span of the diarized segment
            await pilot.press("q")
        assert speaker.voiced_seconds() > 0.5, "assistant audio never reached the speaker"
