"""Mistral turn detection and speaker labels follow the configured realtime model's abilities
(the catalogue), against the emulator that enforces the service's rules."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_mistral_provider import HELLO, REPLY, assert_clean, clip, converse

from voicetui.engine.events import UserSpeechStopped, UserTranscript
from voicetui.providers.mistral import session as session_module
from voicetui.testing.emulators.common import Script, Turn
from voicetui.testing.emulators.mistral import (
    REALTIME_MODEL,
    REALTIME_MODEL_NO_TURNS,
    MistralEmulator,
)

pytestmark = pytest.mark.asyncio


def _session_update(emu: MistralEmulator) -> dict[str, object]:
    updates = [
        e
        for e in emu.log.of("ws_in", "/v1/audio/transcriptions/realtime")
        if e.event_type == "session.update"
    ]
    assert len(updates) == 1
    body = updates[0].body or {}
    session = body.get("session")
    assert isinstance(session, dict)
    return session


def _first_audio_after_update(emu: MistralEmulator) -> bool:
    kinds = [
        e.event_type
        for e in emu.log.of("ws_in", "/v1/audio/transcriptions/realtime")
        if e.event_type in ("session.update", "input_audio.append")
    ]
    return kinds[0] == "session.update"


async def test_realtime_3_turns_come_from_the_service_not_the_local_vad(
    mistral_emulator: MistralEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = mistral_emulator
    emu.enable_strict()
    emu.script = Script(turns=[Turn(user_text=HELLO, reply=REPLY)])

    def no_local_vad(*_: object, **__: object) -> None:
        raise AssertionError("the local VAD ran although the service detects turns")

    monkeypatch.setattr(session_module.MistralSession, "_local_vad", no_local_vad)
    run = await converse(
        emu, tmp_path, "server_vad", clip(0.3, HELLO, 2.5), transcriptionModel=REALTIME_MODEL
    )
    assert_clean(run, emu)
    assert [e.text for e in run.user_lines() if not e.relabel] == [HELLO]
    assert len(run.of(UserSpeechStopped)) == 1
    out = emu.log.event_types("ws_out")
    assert out.count("turn.start") == 1 and out.count("turn.end") == 1
    session = _session_update(emu)
    assert session.get("turn_detection") is not None and not session.get("diarize")
    assert _first_audio_after_update(emu)  # session fields before the first audio chunk
    assert emu.log.of("http", "/v1/audio/transcriptions")  # labels: the batch relabel


async def test_2602_falls_back_to_the_local_vad_and_says_so_once(
    mistral_emulator: MistralEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu = mistral_emulator
    emu.script = Script(turns=[Turn(user_text=HELLO, reply=REPLY), Turn(user_text="Bye now.")])
    session_module._FALLBACK_LOGGED.discard(REALTIME_MODEL_NO_TURNS)
    caplog.set_level(logging.INFO)
    gap = 2.5
    for attempt in range(2):  # two sessions: the log line comes once
        emu.reset_cursors()
        run = await converse(
            emu,
            tmp_path / str(attempt),
            "server_vad",
            clip(0.3, HELLO, gap),
            transcriptionModel=REALTIME_MODEL_NO_TURNS,
        )
        assert_clean(run, emu)
        assert [e.text for e in run.user_lines() if not e.relabel] == [HELLO]
    # no turn_detection was asked of a model without it (the service would refuse it)
    updates = [
        e
        for e in emu.log.of("ws_in", "/v1/audio/transcriptions/realtime")
        if e.event_type == "session.update"
    ]
    assert updates and all(
        not (u.body or {}).get("session", {}).get("turn_detection") for u in updates
    )
    assert "turn.end" not in emu.log.event_types("ws_out")
    said = [r for r in caplog.records if "has no server turn detection" in r.getMessage()]
    assert len(said) == 1 and REALTIME_MODEL_NO_TURNS in said[0].getMessage()


async def test_push_to_talk_labels_speakers_in_stream_with_realtime_3(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.enable_strict()
    segments = [("speaker_1", "Hello there,"), ("speaker_2", "how are you?")]
    emu.script = Script(turns=[Turn(user_text=HELLO, segments=segments, reply=REPLY)])
    run = await converse(
        emu, tmp_path, "push_to_talk", clip(0.3, HELLO, 0.3), transcriptionModel=REALTIME_MODEL
    )
    assert_clean(run, emu)
    relabels = [e for e in run.of(UserTranscript) if e.relabel]
    assert [(e.speaker, e.text, e.segment_index) for e in relabels] == [
        ("speaker_1", "Hello there,", 0),
        ("speaker_2", "how are you?", 1),
    ]
    session = _session_update(emu)
    assert session.get("diarize") is True and session.get("turn_detection") is None
    assert _first_audio_after_update(emu)
    assert emu.log.of("http", "/v1/audio/transcriptions") == []  # no batch pass needed


async def test_a_null_voice_is_never_sent(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    run = await converse(emu, tmp_path, "push_to_talk", clip(0.2, HELLO, 0.2), voice="default")
    assert_clean(run, emu)
    voices = [
        ((e.body or {}).get("session") or {}).get("voice")
        for e in emu.log.of("ws_in", "/v1/audio/speech/realtime")
        if e.event_type == "session.update"
    ]
    voices += [(e.body or {}).get("voice_id") for e in emu.log.of("http", "/v1/audio/speech")]
    assert voices and None not in voices and "default" not in voices
    assert set(voices) == {session_module.DEFAULT_VOICE}
