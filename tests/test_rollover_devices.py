"""Conversations past the session limit (issue 15 item 2), on the live path the console uses:
speech into the virtual microphone, replies recorded from the virtual speaker, the real SDKs
against the emulators. With a 20 s limit and ``onMaxDuration = "rollover"`` (the default),
5 turns span 3 provider sessions: every turn answered, every line once and in order, each
rollover in the transcript, and no reply audio broken up around a rollover."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
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
    Reconnecting,
    SessionRolledOver,
    SessionWarning,
    State,
)
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore, conversation_lines, read_jsonl
from voicetui.providers.base import Provider, ProviderSettings
from voicetui.testing.emulators.common import Turn, speech_like_pcm

pytestmark = [pytest.mark.soak, pytest.mark.audio, pytest.mark.asyncio, pytest.mark.timeout(180)]

LIMIT_S = 20.0
PACE_S = 9.0  # one user turn every 9 s: 5 turns take ~42 s, past two rollovers
SILENT = 1e-3  # |sample| below this on the speaker is silence
MAX_GAP_S = 0.1  # no audio gap over 100 ms inside a reply
TURNS = [
    Turn(user_text="Hello there.", reply="Hello, it is good to hear your voice again."),
    Turn(user_text="How are you?", reply="I am doing well and ready for your questions."),
    Turn(user_text="Tell me more.", reply="There is plenty more to say about this topic."),
    Turn(user_text="Go on please.", reply="Sure, here is the next part of the story now."),
    Turn(user_text="Thank you.", reply="You are welcome, and thanks for talking with me."),
]
SPOKEN = ["Hello there.", "How are you?", "Tell me more.", "Go on please.", "Thank you."]


def silent_runs(pcm: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of silent samples."""
    quiet = np.abs(pcm) < SILENT
    edges = np.diff(np.concatenate(([0], quiet.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def reply_segments(pcm: np.ndarray, split_s: float = 1.0) -> list[tuple[int, int]]:
    """(start, end) of the stretches of sound separated by over ``split_s`` of silence."""
    loud = np.flatnonzero(np.abs(pcm) >= SILENT)
    if len(loud) == 0:
        return []
    cuts = np.flatnonzero(np.diff(loud) > split_s * ENGINE_RATE)
    starts = [int(loud[0]), *(int(loud[c + 1]) for c in cuts)]
    ends = [*(int(loud[c]) + 1 for c in cuts), int(loud[-1]) + 1]
    return list(zip(starts, ends, strict=True))


def synthesize(audio_sandbox: Path, tmp_path: Path) -> list[Path]:
    """The user's five utterances as WAV files (espeak-ng through the sandbox script)."""
    clips = []
    for i, text in enumerate(SPOKEN):
        clip = tmp_path / f"say{i}.wav"
        subprocess.run(
            ["bash", str(audio_sandbox), "speech", text, str(clip)], check=True, capture_output=True
        )
        clips.append(clip)
    return clips


async def converse(
    engine: ConversationEngine, events: list[Event], output: Any, clips: list[Path], rec: Path
) -> float:
    """Speak one clip every PACE_S seconds, each once the previous reply has played out;
    record the speaker throughout. Returns the monotonic time the recording started."""
    try:
        for _ in range(3000):
            if engine.state == State.LISTENING:
                break
            await asyncio.sleep(0.01)
        recorder = await asyncio.create_subprocess_exec(
            "parecord", "--latency-msec=20", "--device=vspeaker.monitor",
            f"--rate={ENGINE_RATE}", "--channels=1", "--format=s16le",
            "--file-format=wav", str(rec),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rec_started = time.monotonic()
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        for k, clip in enumerate(clips):
            await asyncio.sleep(max(t0 + k * PACE_S - time.monotonic(), 0.0))
            play = await asyncio.create_subprocess_exec("paplay", "--device=vmic_feed", str(clip))
            await play.wait()
            for _ in range(400):  # the reply generated and played out
                if sum(isinstance(e, AssistantTextFinal) for e in events) > k:
                    break
                await asyncio.sleep(0.05)
            await asyncio.wait_for(output.wait_idle(), 15)
        await asyncio.sleep(0.5)
        recorder.send_signal(signal.SIGINT)
        await asyncio.wait_for(recorder.wait(), 5)
        return rec_started
    finally:
        await engine.end()


async def run_conversation(
    provider: Provider, settings: ProviderSettings, audio_sandbox: Path, tmp_path: Path
) -> tuple[list[Event], TranscriptStore, ConversationEngine, np.ndarray, float]:
    clips = await asyncio.to_thread(synthesize, audio_sandbox, tmp_path)
    rig = open_audio(
        AudioOptions(input_device="pulse", output_device="pulse", duplex=DuplexPolicy.GATED)
    )
    store = TranscriptStore(tmp_path / "t")
    engine = ConversationEngine(
        provider=provider, settings=settings, api_key="test-key",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate,
        store=store, state_dir=tmp_path,
    )  # fmt: skip
    events: list[Event] = []
    engine.subscribe(events.append)
    rec = tmp_path / "speaker.wav"
    talk = asyncio.create_task(converse(engine, events, rig.output, clips, rec))
    ended = await engine.run()
    rec_started = await talk
    assert ended.code == "user", [e for e in events if isinstance(e, ErrorEvent)]
    return events, store, engine, read_wav_mono(rec), rec_started


def assert_continuous(
    events: list[Event],
    store: TranscriptStore,
    engine: ConversationEngine,
    speaker: np.ndarray,
    rec_started: float,
) -> None:
    """The acceptance checks common to both providers."""
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    assert not [e for e in events if isinstance(e, Reconnecting | SessionWarning)]
    rolls = [e for e in events if isinstance(e, SessionRolledOver)]
    assert [r.number for r in rolls] == [2, 3]  # 5 turns span 3 provider sessions
    # each rollover came before the limit, between turns
    assert all(LIMIT_S * 0.75 <= r.after_s < LIMIT_S for r in rolls), [r.after_s for r in rolls]
    # the transcript on disk: every turn answered, each line once, in order, no gap
    stored = list(read_jsonl(store.path_for(engine.session_id)))
    lines = [(line.role, line.text) for line in conversation_lines(stored)]
    expected = [
        (role, text)
        for t in TURNS
        for role, text in (("user", t.user_text), ("assistant", t.reply))
    ]
    assert lines == expected
    kinds = [e["type"] for e in stored]
    assert kinds.count("SessionRolledOver") == 2
    # the speaker: five replies, each played whole with no gap over 100 ms (the rollovers
    # fall right after a reply has played out and before the next one)
    segments = reply_segments(speaker)
    assert len(segments) == len(TURNS), segments
    gaps = []
    for (start, end), turn in zip(segments, TURNS, strict=True):
        played = speaker[start:end]
        longest = max((n for _s, n in silent_runs(played)), default=0) / ENGINE_RATE
        gaps.append(round(longest * 1000))
        assert longest <= MAX_GAP_S, (turn.reply, longest)
        expected_s = len(speech_like_pcm(turn.reply)) / ENGINE_RATE
        assert (end - start) / ENGINE_RATE == pytest.approx(expected_s, abs=0.15)
    # where each rollover fell on the speaker's timeline: between two replies, not in one
    # (the recorder's start is known to within its latency, hence the margin)
    margins = []
    for roll in rolls:
        at = (roll.at - rec_started) * ENGINE_RATE
        before = [end for _start, end in segments if end <= at + 0.05 * ENGINE_RATE]
        after = [start for start, _end in segments if start >= at - 0.05 * ENGINE_RATE]
        assert before and after and len(before) + len(after) == len(segments), (at, segments)
        margins.append(
            (round((at - before[-1]) / ENGINE_RATE, 2), round((after[0] - at) / ENGINE_RATE, 2))
        )
    print(
        f"rollovers after {[round(r.after_s, 2) for r in rolls]} s, at (s after the previous "
        f"reply, s before the next) {margins}; longest silence inside each reply {gaps} ms"
    )


async def test_openai_rollover_keeps_the_conversation(
    openai_emulator: Any, audio_sandbox: Path, tmp_path: Path
) -> None:
    from voicetui.providers.openai.realtime import OpenAIRealtimeProvider

    emu = openai_emulator
    emu.script.turns = list(TURNS)
    settings = ProviderSettings(
        spec_key="ai-voice-conv.openai", model="gpt-realtime", voice="marin",
        turn_detection="server_vad", max_session_duration_s=LIMIT_S, base_url=emu.base_url,
        extras={"silenceDurationMs": 400},
    )  # fmt: skip
    events, store, engine, speaker, rec_started = await run_conversation(
        OpenAIRealtimeProvider(), settings, audio_sandbox, tmp_path
    )
    assert_continuous(events, store, engine, speaker, rec_started)
    assert len(emu.sessions) == 3
    # the third server session was seeded with the conversation of the first two, as text
    seeded = [
        (item.get("role"), c.get("text"))
        for item in emu.sessions[2].items.values()
        for c in item.get("content", [])
        if c.get("type") in ("input_text", "output_text")
    ]
    assert ("user", "Hello there.") in seeded and ("assistant", TURNS[0].reply) in seeded


async def test_mistral_rollover_keeps_the_conversation(
    mistral_emulator: Any, audio_sandbox: Path, tmp_path: Path
) -> None:
    from voicetui.providers.mistral import PROVIDER

    emu = mistral_emulator
    emu.script.turns = list(TURNS)
    settings = ProviderSettings(
        spec_key="ai-voice-conv.mistral", model="mistral-small-latest", voice="default",
        turn_detection="server_vad", max_session_duration_s=LIMIT_S, base_url=emu.base_url,
        extras={"diarize": False},
    )  # fmt: skip
    events, store, engine, speaker, rec_started = await run_conversation(
        PROVIDER, settings, audio_sandbox, tmp_path
    )
    assert_continuous(events, store, engine, speaker, rec_started)
    # three transcription sockets, one agent conversation holding the whole history
    sockets = emu.log.of("ws_open", "/v1/audio/transcriptions/realtime")
    assert len(sockets) == 3
    (conversation,) = emu.conversations.values()
    said = [str(entry) for entry in conversation]
    assert all(any(t.user_text in s for s in said) for t in TURNS)
