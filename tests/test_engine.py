"""Engine pieces: transcript store, usage store, their CLIs, turn guards (mute, short taps)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.wav import write_wav_pcm16
from voicetui.cli import main as cli
from voicetui.engine.events import (
    AssistantTextDelta,
    AssistantTextFinal,
    ErrorEvent,
    SessionEnded,
    SessionStarted,
    State,
    StateChanged,
    Usage,
    UserTranscript,
)
from voicetui.engine.session import ConversationEngine, new_session_id
from voicetui.engine.transcript import (
    JsonlWriter,
    TranscriptStore,
    conversation_lines,
    format_user_line,
)
from voicetui.engine.usage import UsageStore, UsageTotals
from voicetui.providers.base import ProviderSettings
from voicetui.providers.openai.realtime import OpenAIRealtimeProvider, session_config
from voicetui.testing.emulators.openai import OpenAIEmulator

SPEC = "ai-voice-conv.openai"


# --- transcript store ----------------------------------------------------------------------------


def test_transcript_store_keeps_finals_and_exports_markdown(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    sid = new_session_id()
    path = store.open(sid)
    store.append(SessionStarted(provider=SPEC, model="m", voice="v", turn_detection="server_vad",
                                session_id=sid, max_duration_s=600))  # fmt: skip
    store.append(StateChanged(state=State.LISTENING, previous=State.CONNECTING))  # not kept
    store.append(UserTranscript(turn_id="t1", text="hel", final=False))  # not kept
    store.append(UserTranscript(turn_id="t1", text="hello there", final=True))
    # a diarized relabel replaces the first line; a second segment adds one
    store.append(UserTranscript(turn_id="t1", text="hello", final=True, speaker="speaker_1",
                                start=0.1, end=0.6, relabel=True))  # fmt: skip
    store.append(UserTranscript(turn_id="t1", text="there", final=True, speaker="speaker_2",
                                start=0.7, end=1.5, segment_index=1))  # fmt: skip
    store.append(AssistantTextDelta(turn_id="a1", text="Hi"))  # not kept
    store.append(AssistantTextFinal(turn_id="a1", text="Hi, how", interrupted=True))
    store.append(SessionEnded(reason="ended by user"))
    store.close()
    store.wait()  # lines are written by the disk-writer thread

    kinds = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert kinds == ["SessionStarted"] + ["UserTranscript"] * 3 + [
        "AssistantTextFinal",
        "SessionEnded",
    ]
    assert path.stat().st_mode & 0o777 == 0o600
    lines = conversation_lines(store.load(sid))
    assert [(ln.role, ln.speaker, ln.text) for ln in lines] == [
        ("user", "speaker_1", "hello"),
        ("user", "speaker_2", "there"),
        ("assistant", None, "Hi, how"),
    ]
    md = store.export_markdown(sid)
    assert f"# Conversation {sid}" in md
    assert "**[0.1s -> 0.6s] speaker_1:** hello" in md
    assert "**assistant:** Hi, how *(interrupted)*" in md
    assert "*Session ended: ended by user*" in md
    assert [s.session_id for s in store.sessions()] == [sid]
    assert store.sessions()[0].lines == 3


def test_transcript_reader_skips_a_torn_tail(tmp_path: Path) -> None:
    writer = JsonlWriter(tmp_path / "t.jsonl")
    writer.append(UserTranscript(turn_id="t", text="kept", final=True))
    writer.close()
    writer.wait()
    with (tmp_path / "t.jsonl").open("a") as fh:
        fh.write('{"type": "UserTranscript", "te')  # a crash mid-line (not our writer)
    store = TranscriptStore(tmp_path)
    assert [ln.text for ln in conversation_lines(store.load("t"))] == ["kept"]


def test_format_user_line() -> None:
    assert format_user_line("hi", "speaker_1", 0.1, 1.5) == "[0.1s -> 1.5s] speaker_1: hi"
    assert format_user_line("hi", None, None, None) == "user: hi"
    assert format_user_line("hi", "speaker_2", None, None) == "speaker_2: hi"


def test_transcripts_cli_list_and_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["transcripts", "list"]) == 0
    assert "no transcripts yet" in capsys.readouterr().out
    store = TranscriptStore()
    sid = new_session_id()
    store.open(sid)
    store.append(UserTranscript(turn_id="t", text="question", final=True))
    store.append(AssistantTextFinal(turn_id="a", text="answer"))
    store.close()
    assert cli(["transcripts", "list"]) == 0
    assert sid in capsys.readouterr().out
    out = tmp_path / "x.md"
    assert cli(["transcripts", "export", sid[:10], "--out", str(out)]) == 0
    assert "**assistant:** answer" in out.read_text()
    assert cli(["transcripts", "export", "nope"]) == 1


# --- usage store ---------------------------------------------------------------------


def _add_many(directory: str, n: int) -> None:
    store = UsageStore(Path(directory))
    for _ in range(n):
        store.add(Usage(provider=SPEC, input_tokens=2, output_tokens=1))
    store.flush()  # totals stay in memory until flushed (a forked child skips atexit)


def test_usage_store_adds_per_provider_per_day_atomically(tmp_path: Path) -> None:
    store = UsageStore(tmp_path)
    assert store.today(SPEC) == UsageTotals()
    store.add(Usage(provider=SPEC, input_tokens=10, output_tokens=5, requests=1))
    store.add(Usage(provider=SPEC, input_tokens=3, output_tokens=1, requests=0))
    store.add(Usage(provider="ai-voice-conv.mistral", audio_seconds=1.5))
    store.add(Usage(provider=SPEC, requests=0,
                    rate_limits={"tokens": {"limit": 100.0, "remaining": 90.0}}))  # fmt: skip
    store.add(Usage(provider=SPEC, input_tokens=7), day="2026-01-01")
    assert store.today(SPEC) == UsageTotals(13, 6, 0.0, 1)
    assert store.day(SPEC, "2026-01-01").input_tokens == 7
    assert list(store.days(SPEC)) == sorted(store.days(SPEC))
    assert store.today("ai-voice-conv.mistral").audio_seconds == 1.5
    assert store.rate_limits(SPEC)["tokens"]["remaining"] == 90.0
    store.flush()
    assert (tmp_path / "usage.json").stat().st_mode & 0o777 == 0o600
    # two processes adding at once lose nothing (lock + atomic replace)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(str(tmp_path), 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert store.today(SPEC).input_tokens == 13 + 2 * 40 * 2
    # a damaged file does not stop anything
    (tmp_path / "usage.json").write_text("{not json")
    store.add(Usage(provider=SPEC, input_tokens=1))
    store.flush()
    assert store.today(SPEC).input_tokens == 1
    assert (tmp_path / "usage.json.bad").exists()


def test_usage_cli(capsys: pytest.CaptureFixture[str]) -> None:
    UsageStore().add(Usage(provider=SPEC, input_tokens=4, output_tokens=2, requests=1))
    assert cli(["usage", "openai", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[SPEC]["today"]["input_tokens"] == 4
    assert cli(["usage"]) == 0
    assert "4 in / 2 out tokens" in capsys.readouterr().out


# --- session settings and turn guards (against the emulator) -----------------------------------


def test_session_config_from_settings() -> None:
    settings = ProviderSettings(
        spec_key=SPEC, model="gpt-realtime-2", voice="cedar", turn_detection="server_vad",
        max_session_duration_s=600, base_url="http://x", instructions="Hi.",
        extras={"vadThreshold": 0.7, "prefixPaddingMs": 250, "silenceDurationMs": 800,
                "transcriptionModel": "gpt-4o-transcribe-diarize"},
    )  # fmt: skip
    cfg = session_config(settings)
    assert cfg["model"] == "gpt-realtime-2" and cfg["instructions"] == "Hi."
    assert cfg["audio"]["output"]["voice"] == "cedar"
    assert cfg["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.7, "prefix_padding_ms": 250,
        "silence_duration_ms": 800, "create_response": True, "interrupt_response": True,
    }  # fmt: skip
    assert cfg["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe-diarize"


def _engine(emu: OpenAIEmulator, tmp_path: Path, mode: str, seconds: float) -> ConversationEngine:
    write_wav_pcm16(tmp_path / "s.wav", np.zeros(int(24000 * seconds), np.float32))
    rig = open_audio(AudioOptions(), input_wav=tmp_path / "s.wav",
                     output_wav=tmp_path / "o.wav", realtime_input=True)  # fmt: skip
    settings = ProviderSettings(spec_key=SPEC, model="gpt-realtime", voice="marin",
                                turn_detection=mode,  # type: ignore[arg-type]
                                max_session_duration_s=600, base_url=emu.base_url)  # fmt: skip
    return ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-test",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate, preroll_ms=0,
        end_when_input_ends=False,
    )  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_short_tap_is_padded_to_100_ms_and_mute_sends_nothing(
    openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    emu = openai_emulator
    engine = _engine(emu, tmp_path, "push_to_talk", 3.0)
    errors: list[ErrorEvent] = []
    engine.subscribe(lambda e: errors.append(e) if isinstance(e, ErrorEvent) else None)

    tap_bytes: list[int] = []

    async def drive() -> None:
        try:
            await steps()
        finally:
            await engine.end()

    async def steps() -> None:
        for _ in range(2000):  # until connected
            if engine.state == State.IDLE:
                break
            await asyncio.sleep(0.01)
        emu.log.clear()
        await engine.start_talking()
        await asyncio.sleep(0.02)  # a 20 ms tap
        await engine.stop_talking()
        await asyncio.sleep(0.5)
        tap_bytes.append(emu.log.audio_bytes_received())
        assert "input_audio_buffer.committed" in emu.log.event_types("ws_out")
        engine.set_muted(True)
        emu.log.clear()
        await engine.start_talking()
        await asyncio.sleep(0.3)

    task = asyncio.create_task(drive())
    ended = await engine.run()
    await task
    assert ended.code == "user"
    assert not [e for e in errors if e.code == "turn_too_short"], errors
    assert tap_bytes[0] >= 100 * 48  # padded up to the 100 ms the service needs
    appended = [
        e.audio_bytes for e in emu.log.of("ws_in") if e.event_type == "input_audio_buffer.append"
    ]
    assert appended == []  # muted: nothing at all went out
    assert engine.muted and os.environ.get("OPENAI_API_KEY") is None


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_cancelling_run_still_closes_everything(
    openai_emulator: OpenAIEmulator, tmp_path: Path
) -> None:
    emu = openai_emulator
    engine = _engine(emu, tmp_path, "server_vad", 5.0)
    events: list[object] = []
    engine.subscribe(events.append)
    task = asyncio.create_task(engine.run())
    for _ in range(2000):
        if engine.state == State.LISTENING:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert isinstance(events[-2], SessionEnded) and engine.state == State.ENDED
    for _ in range(200):  # the socket was closed by us
        if emu.log.of("ws_close"):
            break
        await asyncio.sleep(0.01)
    assert emu.log.of("ws_close")
