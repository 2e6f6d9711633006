"""The conversation engine with the OpenAI Realtime provider, against the emulator.

Real SDK (``AsyncOpenAI().realtime.connect``) -> strict loopback emulator; real audio engine
(WAV endpoints, and the virtual PulseAudio speaker for the barge-in measurement).
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.ports import ENGINE_RATE, DuplexPolicy
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.engine.events import (
    AssistantAudio,
    AssistantDone,
    AssistantTextFinal,
    ErrorEvent,
    Event,
    Interrupted,
    Reconnected,
    Reconnecting,
    SessionEnded,
    SessionRolledOver,
    SessionStarted,
    SessionWarning,
    StateChanged,
    TurnLatency,
    UserSpeechStarted,
    UserSpeechStopped,
    UserTranscript,
)
from voicetui.engine.session import ConversationEngine
from voicetui.engine.talk import Printer
from voicetui.engine.transcript import TranscriptStore, conversation_lines, read_jsonl
from voicetui.engine.usage import UsageStore
from voicetui.providers.base import ProviderSettings
from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
from voicetui.testing.emulators import openai as emulator_module
from voicetui.testing.emulators.common import Turn, speech_like_pcm
from voicetui.testing.emulators.openai import OpenAIEmulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

SPEC = "ai-voice-conv.openai"
SR = ENGINE_RATE


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    """A strict emulator in the test's loop; any frame the SDK types reject fails the test."""
    emulator = OpenAIEmulator(strict=True)
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert not emulator.violations, emulator.violations
    assert not emulator.client_violations, emulator.client_violations


def settings_for(
    emu: OpenAIEmulator,
    mode: str = "push_to_talk",
    max_s: float = 600,
    on_max: str = "rollover",
    **extras: Any,
) -> ProviderSettings:
    extras.setdefault("silenceDurationMs", 300)
    return ProviderSettings(
        spec_key=SPEC,
        model="gpt-realtime",
        voice="marin",
        turn_detection=mode,  # type: ignore[arg-type]
        max_session_duration_s=max_s,
        base_url=emu.base_url,
        instructions="Be brief.",
        extras=extras,
        on_max_duration=on_max,  # type: ignore[arg-type]
    )


def write_clip(path: Path, *parts: str | float) -> Path:
    """A WAV of speech-like words (str) and silences (float seconds)."""
    pcm = [
        speech_like_pcm(p) if isinstance(p, str) else np.zeros(int(SR * p), np.float32)
        for p in parts
    ]
    write_wav_pcm16(path, np.concatenate(pcm))
    return path


class Run:
    """An engine wired to WAV (or device) endpoints, recording every event."""

    def __init__(
        self,
        emu: OpenAIEmulator,
        tmp_path: Path,
        settings: ProviderSettings,
        clip: Path,
        *,
        realtime: bool,
        output_device: str | None = None,
        duplex: DuplexPolicy = DuplexPolicy.FULL,
        **engine_kw: Any,
    ) -> None:
        self.out_wav = tmp_path / "out.wav"
        self.rig = open_audio(
            AudioOptions(output_device=output_device, duplex=duplex),
            input_wav=clip,
            output_wav=None if output_device else self.out_wav,
            realtime_input=realtime,
        )
        self.store = TranscriptStore(tmp_path / "transcripts")
        self.usage = UsageStore(tmp_path / "state")
        self.provider = OpenAIRealtimeProvider(reconnect_base_delay_s=0.05)
        engine_kw.setdefault("end_when_input_ends", True)
        engine_kw.setdefault("talk_on_connect", settings.turn_detection == "push_to_talk")
        self.engine = ConversationEngine(
            provider=self.provider,
            settings=settings,
            api_key="sk-test",
            audio_in=self.rig.input,
            audio_out=self.rig.output,
            gate=self.rig.gate,
            store=self.store,
            usage=self.usage,
            state_dir=tmp_path / "state",
            **engine_kw,
        )
        self.events: list[Event] = []
        self.engine.subscribe(self.events.append)

    async def run(self, limit_s: float = 40) -> SessionEnded:
        async with asyncio.timeout(limit_s):
            return await self.engine.run()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def lines(self) -> list[tuple[str, str]]:
        """(role, text) of the final lines, in order."""
        out: list[tuple[str, str]] = []
        for e in self.events:
            if isinstance(e, UserTranscript) and e.final:
                out.append(("user", e.text))
            elif isinstance(e, AssistantTextFinal):
                out.append(("assistant", e.text))
        return out


async def until(predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Poll ``predicate`` every 10 ms; fail after ``limit_s``."""
    for _ in range(int(limit_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def sent(emu: OpenAIEmulator, event_type: str) -> list[dict[str, Any]]:
    return [e.body or {} for e in emu.log.of("ws_in") if e.event_type == event_type]


def served(emu: OpenAIEmulator, event_type: str) -> list[dict[str, Any]]:
    return [e.body or {} for e in emu.log.of("ws_out") if e.event_type == event_type]


def emulated_usage(emu: OpenAIEmulator) -> tuple[int, int]:
    inp = out = 0
    for body in served(emu, "response.done"):
        inp += body["response"]["usage"]["input_tokens"]
        out += body["response"]["usage"]["output_tokens"]
    for body in served(emu, "conversation.item.input_audio_transcription.completed"):
        inp += body["usage"].get("input_tokens", 0)
        out += body["usage"].get("output_tokens", 0)
    return inp, out


# --- the two turn modes ----------------------------------------------------------------------


async def test_push_to_talk_turn(emu: OpenAIEmulator, tmp_path: Path) -> None:
    emu.script.turns = [Turn(user_text="What time is it?", reply="It is noon, more or less.")]
    clip = write_clip(tmp_path / "q.wav", "What time is it")
    run = Run(
        emu,
        tmp_path,
        settings_for(emu, transcriptionModel="gpt-4o-transcribe"),
        clip,
        realtime=False,
    )
    ended = await run.run()

    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [("user", "What time is it?"), ("assistant", "It is noon, more or less.")]
    # the whole file went out as one turn, committed once, then one reply was asked for
    update = sent(emu, "session.update")[0]["session"]
    assert update["audio"]["input"]["turn_detection"] is None
    assert update["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe"}
    assert update["audio"]["output"]["voice"] == "marin"
    assert len(sent(emu, "input_audio_buffer.commit")) == 1
    assert len(sent(emu, "response.create")) == 1
    clip_samples = len(read_wav_mono(clip))
    assert emu.log.audio_bytes_received() >= clip_samples * 2
    # all assistant audio, exactly the emulated length, in OUT.wav
    expected = len(speech_like_pcm("It is noon, more or less."))
    assert sum(e.samples for e in run.of(AssistantAudio)) == expected
    assert len(read_wav_mono(run.out_wav)) == expected
    # usage: the store holds what the service reported, one request
    totals = run.usage.today(SPEC)
    assert (totals.input_tokens, totals.output_tokens) == emulated_usage(emu)
    assert totals.requests == 1
    assert totals.audio_seconds == pytest.approx(expected / SR, abs=0.001)
    assert run.usage.rate_limits(SPEC)["tokens"]["limit"] == 400000
    # latency waterfall, kept in the transcript too
    (lat,) = run.of(TurnLatency)
    assert lat.final_transcript_ms is not None and lat.first_audio_ms is not None
    assert 0 <= lat.final_transcript_ms <= lat.first_audio_ms
    stored = run.store.load(run.engine.session_id)
    assert [e["type"] for e in stored].count("TurnLatency") == 1
    assert [(ln.role, ln.text) for ln in conversation_lines(stored)] == run.lines()
    states = [e.state.value for e in run.of(StateChanged)]
    for state in ("connecting", "user_speaking", "thinking", "assistant_speaking", "ended"):
        assert state in states


async def test_server_vad_two_turns(emu: OpenAIEmulator, tmp_path: Path) -> None:
    emu.script.turns = [
        Turn(user_text="Hello there.", reply="Hi, nice to meet you."),
        Turn(user_text="Tell me a joke.", reply="Why not, here it is."),
    ]
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 2.2, "Tell me joke", 0.3)
    settings = settings_for(emu, "server_vad", vadThreshold=0.4, prefixPaddingMs=200)
    run = Run(emu, tmp_path, settings, clip, realtime=True)
    ended = await run.run()

    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert run.lines() == [
        ("user", "Hello there."),
        ("assistant", "Hi, nice to meet you."),
        ("user", "Tell me a joke."),
        ("assistant", "Why not, here it is."),
    ]
    td = sent(emu, "session.update")[0]["session"]["audio"]["input"]["turn_detection"]
    assert td["type"] == "server_vad"
    assert (td["threshold"], td["prefix_padding_ms"], td["silence_duration_ms"]) == (0.4, 200, 300)
    assert sent(emu, "input_audio_buffer.commit") == []  # the server decides the turns
    assert sent(emu, "response.create") == []
    expected = len(speech_like_pcm("Hi, nice to meet you.")) + len(
        speech_like_pcm("Why not, here it is.")
    )
    assert sum(e.samples for e in run.of(AssistantAudio)) == expected
    out = read_wav_mono(run.out_wav)
    # real-time WAV speaker: silence between the replies, every reply sample inside
    assert np.count_nonzero(np.abs(out) > 1e-4) <= expected
    assert len(out) >= expected
    totals = run.usage.today(SPEC)
    assert (totals.input_tokens, totals.output_tokens) == emulated_usage(emu)
    assert totals.requests == 2
    assert len(run.of(TurnLatency)) == 2
    assert not [e for e in run.of(AssistantTextFinal) if e.interrupted]


async def test_diarized_transcription_gives_speaker_lines(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.script.turns = [
        Turn(segments=[("A", "Did you see it?"), ("B", "Yes I did.")], reply="Great.")
    ]
    clip = write_clip(tmp_path / "q.wav", "Did you see it", 0.2, "Yes did")
    settings = settings_for(emu, transcriptionModel="gpt-4o-transcribe-diarize")
    run = Run(emu, tmp_path, settings, clip, realtime=False)
    lines: list[str] = []

    class Capture:
        def write(self, s: str) -> int:
            lines.extend(x for x in s.splitlines() if x)
            return len(s)

        def flush(self) -> None:
            pass

    run.engine.subscribe(Printer(out=Capture(), err=Capture()))  # type: ignore[arg-type]
    await run.run()

    finals = [e for e in run.of(UserTranscript) if e.final]
    assert [(e.speaker, e.text, e.segment_index) for e in finals] == [
        ("speaker_1", "Did you see it?", 0),
        ("speaker_2", "Yes I did.", 1),
    ]
    assert sent(emu, "session.update")[0]["session"]["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-transcribe-diarize"
    }
    assert finals[0].start == 0.0 and finals[0].end == finals[1].start
    assert lines[0].startswith("[0.0s -> ") and lines[0].endswith("] speaker_1 : Did you see it?")
    assert lines[1].endswith("speaker_2 : Yes I did.")
    assert lines[2] == "assistant: Great."


# --- interruption ------------------------------------------------------------------------------


def tone_like_text(text: str, rate: int = SR, seconds_per_char: float = 0.06) -> np.ndarray:
    """Continuous reply audio (no gaps), so the recording shows exactly where it was cut."""
    n = int(rate * seconds_per_char * max(len(text), 1))
    t = np.arange(n) / rate
    return (0.3 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)


@contextmanager
def record_speaker(path: Path) -> Iterator[Path]:
    """Record what reached the virtual speaker (SIGINT finalises the WAV)."""
    proc = subprocess.Popen(
        ["parecord", "--latency-msec=50", "--device=vspeaker.monitor", f"--rate={SR}",
         "--channels=1", "--format=s16le", "--file-format=wav", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    try:
        yield path
    finally:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)


def first_sound_ms(pcm: np.ndarray, threshold: float = 0.03) -> tuple[float, float]:
    """Start and length (ms) of the first continuous sound (gaps under 30 ms bridged)."""
    loud = np.flatnonzero(np.abs(pcm) > threshold)
    assert len(loud), "nothing was recorded"
    gaps = np.flatnonzero(np.diff(loud) > SR * 0.03)
    end = loud[gaps[0]] if len(gaps) else loud[-1]
    return loud[0] * 1000 / SR, (end - loud[0] + 1) * 1000 / SR


@pytest.mark.audio
@pytest.mark.timeout(90)
async def test_barge_in_cuts_playback_and_truncates_at_what_was_played(
    emu: OpenAIEmulator,
    tmp_path: Path,
    audio_sandbox: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(emulator_module, "speech_like_pcm", tone_like_text)
    long_reply = "This is a rather long answer that keeps going for quite a while."
    emu.script.turns = [
        Turn(user_text="Hello there.", reply=long_reply),
        Turn(user_text="Wait, stop.", reply="Okay."),
    ]
    # speech, then the user cuts in about 1.3 s into the reply
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 1.9, "Wait stop", 0.3)
    settings = settings_for(emu, "server_vad")
    run = Run(emu, tmp_path, settings, clip, realtime=True, output_device="pulse")
    with record_speaker(tmp_path / "speaker.wav") as rec:
        ended = await run.run(limit_s=60)
    assert ended.code == "input_finished", run.of(ErrorEvent)

    (interrupted,) = run.of(Interrupted)
    assert interrupted.by == "barge_in"
    (truncate,) = sent(emu, "conversation.item.truncate")
    assert truncate["audio_end_ms"] == interrupted.played_ms
    reply_ms = len(tone_like_text(long_reply)) * 1000 / SR
    assert 300 < truncate["audio_end_ms"] < reply_ms - 300  # really mid-reply

    # what the speaker really played of the first reply, measured on vspeaker.monitor
    recorded = read_wav_mono(rec)
    _start, played_ms = first_sound_ms(recorded)
    block_ms = 20.0
    print(f"barge-in: truncate {truncate['audio_end_ms']} ms, speaker played {played_ms:.1f} ms")
    assert abs(played_ms - truncate["audio_end_ms"]) <= block_ms, (
        played_ms,
        truncate["audio_end_ms"],
    )

    finals = run.of(AssistantTextFinal)
    assert finals[0].interrupted and long_reply.startswith(finals[0].text)
    assert 0 < len(finals[0].text) < len(long_reply)
    assert finals[1].text == "Okay." and not finals[1].interrupted
    # no audio of the cancelled reply was queued after the cut
    cut_at = run.events.index(interrupted)
    late = [
        e
        for e in run.events[cut_at:]
        if isinstance(e, AssistantAudio) and e.turn_id == interrupted.turn_id
    ]
    assert late == []


async def test_interrupt_key_and_talk_key_cut_the_reply(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.timing.audio_pace = 4.0  # the reply streams in for a while
    reply = "A long reply that the user is going to cut short very soon indeed."
    emu.script.turns = [Turn(user_text="Go on.", reply=reply), Turn(user_text="Hi.", reply="Hm.")]
    clip = write_clip(tmp_path / "q.wav", "Go on")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=True, end_when_input_ends=False)
    engine = run.engine

    async def drive() -> None:
        await until(lambda: bool(run.of(AssistantAudio)))
        await asyncio.sleep(0.4)
        await engine.interrupt()
        await asyncio.sleep(0.3)
        await engine.end()

    driver = asyncio.create_task(drive())
    await run.run()
    await driver

    assert len(sent(emu, "response.cancel")) == 1
    (truncate,) = sent(emu, "conversation.item.truncate")
    (cut,) = run.of(Interrupted)
    assert cut.by == "user_key" and truncate["audio_end_ms"] == cut.played_ms > 0
    received_ms = sum(e.samples for e in run.of(AssistantAudio)) * 1000 // SR
    assert truncate["audio_end_ms"] <= received_ms
    (final,) = run.of(AssistantTextFinal)
    assert final.interrupted and reply.startswith(final.text) and final.text != reply
    done = served(emu, "response.done")[0]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "client_cancelled"


async def test_talk_key_while_assistant_speaks_interrupts_first(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.timing.audio_pace = 4.0
    reply = "Another long reply that will be cut by pressing the talk key again."
    emu.script.turns = [Turn(user_text="Go.", reply=reply), Turn(user_text="Next.", reply="Ok.")]
    clip = write_clip(tmp_path / "q.wav", "Go on", 3.0)
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=True, end_when_input_ends=False)
    engine = run.engine

    async def drive() -> None:
        await until(lambda: engine.talking)
        await asyncio.sleep(0.7)  # ~0.7 s of the clip: the first turn
        await engine.stop_talking()
        await until(lambda: bool(run.of(AssistantAudio)))
        await asyncio.sleep(0.3)
        await engine.start_talking()  # key down while the reply plays
        await asyncio.sleep(0.4)
        await engine.stop_talking()
        await until(lambda: len(run.of(AssistantTextFinal)) >= 2)
        await engine.end()

    driver = asyncio.create_task(drive())
    await run.run()
    await driver
    types = [
        e.event_type for e in emu.log.of("ws_in") if e.event_type != "input_audio_buffer.append"
    ]
    # cancel and truncate go out before the new turn's buffer is cleared and committed
    i_cancel = types.index("response.cancel")
    assert types.index("conversation.item.truncate") > i_cancel
    assert types.index("input_audio_buffer.clear", i_cancel) > i_cancel
    assert types.count("input_audio_buffer.commit") == 2
    finals = run.of(AssistantTextFinal)
    assert finals[0].interrupted and not finals[1].interrupted and finals[1].text == "Ok."
    assert run.of(Interrupted)[0].by == "barge_in"


# --- failures -----------------------------------------------------------------------------------


async def test_key_rejected_at_handshake_is_one_clear_error_without_retry(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.faults.ws_reject_status = 401
    emu.faults.ws_reject_count = 5
    clip = write_clip(tmp_path / "q.wav", "Hello")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=False)
    ended = await run.run()
    assert ended.code == "error"
    (error,) = run.of(ErrorEvent)
    assert error.fatal and error.code == "key_rejected"
    assert "rejected the API key" in error.message and "\n" not in error.message
    assert len(emu.log.of("ws_open")) == 1  # never retried
    assert not run.of(Reconnecting)


async def test_refused_connection_is_a_network_error(tmp_path: Path) -> None:
    from voicetui.testing.emulators.common import free_port

    emu = OpenAIEmulator(port=free_port())  # never started: nothing listens
    clip = write_clip(tmp_path / "q.wav", "Hello")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=False)
    ended = await run.run()
    assert ended.code == "error"
    (error,) = run.of(ErrorEvent)
    assert error.code == "network" and "connection refused" in error.message


async def test_socket_drop_mid_reply_reconnects_with_one_continuous_transcript(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    reply = "Sure thing, my good friend, here we go."
    emu.script.turns = [
        Turn(user_text="Hello there.", reply=reply),
        Turn(user_text="", reply=reply),  # asked again on the new socket: the same answer
        Turn(user_text="And then?", reply="Then we carry on."),
    ]
    # server events of turn one: created, updated, speech started/stopped, committed,
    # item added/done, 2 transcript deltas, completed, response.created, rate limits,
    # output item, item added, part added -> drop after a few reply deltas
    emu.faults.drop_after_events = 20
    emu.faults.drop_close_code = 1011
    # room for the whole reply, asked again after the drop, before the user speaks again
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 4.5, "And then", 0.3)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)
    ended = await run.run()

    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert len(run.of(Reconnecting)) == 1 and len(run.of(Reconnected)) == 1
    assert 0.05 <= run.of(Reconnecting)[0].delay_s <= 0.05 * 1.25  # backoff with jitter
    assert len(emu.log.of("ws_open")) == 2
    lines = run.lines()
    assert [role for role, _ in lines] == ["user", "assistant", "user", "assistant"]
    assert lines[0] == ("user", "Hello there.")
    # the reply the drop cut short was asked for again and arrived whole, once
    assert lines[1] == ("assistant", reply)
    assert not any(f.interrupted for f in run.of(AssistantTextFinal))
    assert lines[2:] == [("user", "And then?"), ("assistant", "Then we carry on.")]
    assert len(sent(emu, "response.create")) == 1  # the re-ask (VAD asked for the others)
    # the new server session was seeded with the conversation so far, then configured
    second = emu.sessions[1].id
    seeded = [
        (e.body or {})["item"]
        for e in emu.log.of("ws_in")
        if e.event_type == "conversation.item.create" and e.conversation_id == second
    ]
    assert seeded[0] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Hello there."}],
    }
    assert [s["role"] for s in seeded] == ["user"]  # not the half reply: it comes again
    first_sent = next(e for e in emu.log.of("ws_in") if e.conversation_id == second)
    assert first_sent.event_type == "session.update"
    # one continuous transcript file, each line once
    stored = conversation_lines(run.store.load(run.engine.session_id))
    assert [(ln.role, ln.text) for ln in stored] == lines


async def test_malformed_and_unknown_frames_are_logged_and_skipped(
    emu: OpenAIEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu.script.turns = [Turn(user_text="Hi.", reply="Hello to you.")]
    emu.faults.malformed_after_events = 3
    emu.faults.unknown_after_events = 5
    clip = write_clip(tmp_path / "q.wav", "Hi there")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=False)
    with caplog.at_level(logging.INFO, logger="voicetui"):
        ended = await run.run()
    assert ended.code == "input_finished"
    assert run.lines() == [("user", "Hi."), ("assistant", "Hello to you.")]
    assert not run.of(ErrorEvent)
    messages = [r.getMessage() for r in caplog.records]
    assert any("malformed frame" in m for m in messages)
    assert any("emulator.unknown_future_event" in m for m in messages)


async def test_max_duration_warns_then_ends_after_the_reply(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.script.turns = [Turn(user_text="Hi.", reply="A reply that is still playing at the cap.")]
    clip = write_clip(tmp_path / "q.wav", 0.2, "Hi there", 8.0)
    settings = settings_for(emu, "server_vad", max_s=2.0, on_max="end")
    run = Run(emu, tmp_path, settings, clip, realtime=True)
    started = time.monotonic()
    ended = await run.run()
    took = time.monotonic() - started

    assert ended.code == "max_duration" and "2 s" in ended.reason
    assert not run.of(SessionRolledOver) and len(emu.sessions) == 1  # onMaxDuration = end
    (warning,) = run.of(SessionWarning)
    assert warning.code == "max_duration_soon"
    kinds = [type(e) for e in run.events]
    assert kinds.index(SessionWarning) < kinds.index(SessionEnded)
    # the reply (about 2.6 s, started near 1 s) finished playing before the end
    (final,) = run.of(AssistantTextFinal)
    assert not final.interrupted and final.at < ended.at
    assert took < 8.0  # ended well before the input ran out
    stored = read_jsonl(run.store.path_for(run.engine.session_id))
    assert [e["type"] for e in stored][-1] == "SessionEnded"


async def test_rollover_continues_past_the_limit_in_seeded_sessions(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    """onMaxDuration = rollover (the default): between turns, before the 3 s limit, the
    engine moves to a new server session seeded with the conversation; every turn is
    answered, each line once, and the transcript records each rollover."""
    emu.script.turns = [
        Turn(user_text="Hi.", reply="Hello to you."),
        Turn(user_text="And then?", reply="Then we go on."),
        Turn(user_text="Last one.", reply="Goodbye now."),
    ]
    parts = (0.2, "Hi there", 2.4, "And then what", 2.4, "Last one", 2.0)
    clip = write_clip(tmp_path / "q.wav", *parts)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad", max_s=3.0), clip, realtime=True)
    notes = io.StringIO()
    run.engine.subscribe(Printer(out=io.StringIO(), err=notes))  # what `voicetui talk` prints
    ended = await run.run()

    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert "continued in a new session (2) after" in notes.getvalue()
    assert run.lines() == [
        ("user", "Hi."), ("assistant", "Hello to you."),
        ("user", "And then?"), ("assistant", "Then we go on."),
        ("user", "Last one."), ("assistant", "Goodbye now."),
    ]  # fmt: skip
    rolls = run.of(SessionRolledOver)
    assert [r.number for r in rolls] == list(range(2, len(rolls) + 2)) and len(rolls) >= 2
    assert all(r.seeded == "items" for r in rolls)
    assert len(emu.sessions) == len(rolls) + 1
    assert not run.of(Reconnecting) and not run.of(SessionWarning)
    # the last session was seeded with the conversation before it, as text items
    seeded = [
        c.get("text")
        for item in emu.sessions[-1].items.values()
        if item.get("role") in ("user", "assistant")
        for c in item.get("content", [])
    ]
    assert "Hi." in seeded and "Hello to you." in seeded
    stored = [e["type"] for e in read_jsonl(run.store.path_for(run.engine.session_id))]
    assert stored.count("SessionRolledOver") == len(rolls)


async def test_rollover_over_the_context_budget_seeds_a_summary(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    """A conversation longer than the seed budget is replayed as one system summary plus
    the newest lines; the new session takes it and the next turn is answered."""
    emu.script.turns = [
        Turn(user_text="Tell me a long story.", reply="Once upon a time there was a fox."),
        Turn(user_text="And then?", reply="The fox went home."),
    ]
    clip = write_clip(tmp_path / "q.wav", 0.2, "Tell me a story", 3.0, "And then what", 2.0)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad", max_s=3.0), clip, realtime=True)
    run.provider.seed_budget_chars = 40  # the first exchange alone is over it
    ended = await run.run()

    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert [text for _role, text in run.lines()][-1] == "The fox went home."
    rolls = run.of(SessionRolledOver)
    assert rolls and rolls[0].seeded == "summary"
    items = list(emu.sessions[1].items.values())
    first = items[0]
    assert first["role"] == "system"
    assert first["content"][0]["text"].startswith("Summary of the earlier conversation")
    assert "error" not in emu.log.event_types("ws_out")  # the service took every item


async def test_a_rollover_the_service_refuses_is_retried_then_ends_at_the_limit(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    """The new session cannot be opened (503 on every try): the old one carries on, the
    renewal is tried again, and at the limit the session warns and ends cleanly."""
    emu.script.turns = [Turn(user_text="Hi.", reply="Hello to you.")]
    clip = write_clip(tmp_path / "q.wav", 0.2, "Hi there", 6.0)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad", max_s=4.0), clip, realtime=True)

    def refuse_new_sessions(event: Event) -> None:
        if isinstance(event, SessionStarted):
            emu.faults.ws_reject_status = 503
            emu.faults.ws_reject_count = 100

    run.engine.subscribe(refuse_new_sessions)
    ended = await run.run()

    assert ended.code == "max_duration", run.of(ErrorEvent)
    assert run.lines() == [("user", "Hi."), ("assistant", "Hello to you.")]
    assert not run.of(SessionRolledOver) and len(emu.sessions) == 1
    rejected = [e for e in emu.log.of("ws_open") if e.status == 503]
    assert len(rejected) >= 2  # tried again after the first refusal
    (warning,) = [w for w in run.of(SessionWarning) if w.code == "rollover_failed"]
    assert "could not continue in a new session" in warning.message


async def test_push_to_talk_rollover_waits_for_the_key_and_keeps_the_conversation(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    """Push-to-talk: the rollover never happens while the key is down; the turn after it
    goes to the new, seeded session and is answered."""
    emu.script.turns = [
        Turn(user_text="First.", reply="One."),
        Turn(user_text="Second.", reply="Two."),
    ]
    clip = write_clip(tmp_path / "q.wav", "First one", 8.0)
    settings = settings_for(emu, "push_to_talk", max_s=2.0)
    run = Run(
        emu, tmp_path, settings, clip, realtime=True, end_when_input_ends=False,
        talk_on_connect=False,
    )  # fmt: skip
    engine = run.engine

    async def drive() -> None:
        await until(lambda: engine.elapsed_s > 1.0)  # the window opens at 1.5 s
        await engine.start_talking()
        await asyncio.sleep(1.0)  # held across the window's opening
        assert not run.of(SessionRolledOver)
        await engine.stop_talking()
        await until(lambda: len(run.of(AssistantTextFinal)) == 1)
        await until(lambda: bool(run.of(SessionRolledOver)))
        await engine.start_talking()
        await asyncio.sleep(0.5)
        await engine.stop_talking()
        await until(lambda: len(run.of(AssistantTextFinal)) == 2)
        await engine.end()

    driver = asyncio.create_task(drive())
    await run.run()
    await driver

    assert not run.of(ErrorEvent)
    assert run.lines() == [
        ("user", "First."), ("assistant", "One."), ("user", "Second."), ("assistant", "Two."),
    ]  # fmt: skip
    (roll, *_) = run.of(SessionRolledOver)
    (final_one, final_two) = run.of(AssistantTextFinal)
    assert final_one.at < roll.at < final_two.at
    assert emu.sessions[0].user_transcripts == ["First."]
    assert any("Second." in later.user_transcripts for later in emu.sessions[1:])


async def test_gives_up_after_the_reconnect_attempts_with_one_line(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.faults.drop_after_events = 4  # right after the session is configured
    emu.faults.ws_reject_status = 503  # and then the service stays down (armed below)
    emu.faults.ws_reject_count = 0
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 3.0)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)

    def arm(event: Event) -> None:
        if isinstance(event, Reconnecting) and event.attempt == 1:
            emu.faults.ws_reject_count = 10

    run.engine.subscribe(arm)
    ended = await run.run()
    assert ended.code == "error"
    attempts = [e.attempt for e in run.of(Reconnecting)]
    assert attempts == [1, 2, 3, 4, 5]
    delays = [e.delay_s for e in run.of(Reconnecting)]
    for delay, base in zip(delays, [0.05, 0.1, 0.2, 0.2, 0.2], strict=True):
        assert base <= delay <= base * 1.25  # capped exponential backoff with jitter
    fatal = [e for e in run.of(ErrorEvent) if e.fatal]
    assert len(fatal) == 1 and "could not reconnect" in fatal[0].message
    assert "\n" not in fatal[0].message


async def test_error_events_become_non_fatal_errors_and_quiet_ones_are_ignored(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "q.wav", 2.0)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)
    engine = run.engine

    async def poke() -> None:
        await until(lambda: engine.state.value == "listening")
        session: Any = engine._session  # the live provider session
        await session._send({"type": "response.cancel"})  # nothing active: harmless
        await session._send({"type": "output_audio_buffer.clear"})  # WebRTC-only: an error
        await until(lambda: bool(run.of(ErrorEvent)))

    task = asyncio.create_task(poke())
    ended = await run.run()
    await task
    assert ended.code == "input_finished"
    (error,) = run.of(ErrorEvent)
    assert not error.fatal and error.code == "invalid_value"
    assert error.message.startswith("OpenAI: ")


@pytest.mark.parametrize(
    ("margin_s", "reason"),
    [(1.5, "renewing the session"), (-100.0, "ended the session at its time limit")],
    ids=["renewed-before-the-cap", "rolled-over-at-the-cap"],
)
async def test_session_cap_rolls_over_with_one_continuous_transcript(
    emu: OpenAIEmulator, tmp_path: Path, margin_s: float, reason: str
) -> None:
    # the service's cap on the first socket; renewal never comes sooner than 5 s (the floor)
    emu.session_max_s = 7.0
    emu.script.turns = [
        Turn(user_text="Hello there.", reply="Hi, good to hear you."),
        Turn(user_text="And then?", reply="Then we carry on."),
    ]
    clip = write_clip(tmp_path / "q.wav", 0.3, "Hello there", 6.6, "And then", 0.3)
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True)
    run.provider.rollover_margin_s = margin_s

    def relax(event: Event) -> None:
        if isinstance(event, Reconnecting):
            emu.session_max_s = 3600.0  # the new session is far from its cap

    run.engine.subscribe(relax)
    ended = await run.run()
    assert ended.code == "input_finished", run.of(ErrorEvent)
    (again,) = run.of(Reconnecting)
    assert reason in again.reason
    assert len(run.of(Reconnected)) == 1 and len(emu.log.of("ws_open")) == 2
    assert run.lines() == [
        ("user", "Hello there."),
        ("assistant", "Hi, good to hear you."),
        ("user", "And then?"),
        ("assistant", "Then we carry on."),
    ]
    assert not run.of(ErrorEvent) and not run.of(Interrupted)
    second = emu.sessions[1].id
    seeded = [
        (e.body or {})["item"]["role"]
        for e in emu.log.of("ws_in")
        if e.event_type == "conversation.item.create" and e.conversation_id == second
    ]
    assert seeded == ["user", "assistant"]


@pytest.mark.parametrize(
    "case",
    [(0.3, False), (0.01, True)],
    ids=["speech-at-echo-level-is-not-a-barge-in", "speech-over-the-echo-cuts-the-reply"],
)
async def test_echo_gate_decides_barge_in(
    emu: OpenAIEmulator,
    tmp_path: Path,
    audio_sandbox: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[float, bool],
) -> None:
    reply_amplitude, cut = case

    def reply_audio(text: str) -> np.ndarray:
        return tone_like_text(text) * (reply_amplitude / 0.3)

    monkeypatch.setattr(emulator_module, "speech_like_pcm", reply_audio)
    emu.timing.audio_pace = 1.0 if cut else 0.0
    long_reply = "This is a rather long answer that keeps going for quite a while."
    emu.script.turns = [
        Turn(user_text="Hello there.", reply=long_reply),
        Turn(user_text="Wait, stop.", reply="Okay."),
    ]
    # the second utterance is real speech (the gate's VAD must hear a voice), as loud as a
    # close-talking user: about -14 dBFS RMS
    voice = tmp_path / "voice.wav"
    make = await asyncio.create_subprocess_exec(
        "bash", str(audio_sandbox), "speech", "wait, stop please", str(voice),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert await make.wait() == 0
    speech = read_wav_mono(voice)
    speech = speech * (0.2 / float(np.sqrt(np.mean(speech**2))))
    pcm = [np.zeros(int(SR * 0.3), np.float32), speech_like_pcm("Hello there"),
           np.zeros(int(SR * 1.6), np.float32), speech.astype(np.float32),
           np.zeros(int(SR * 0.3), np.float32)]  # fmt: skip
    clip = tmp_path / "q.wav"
    write_wav_pcm16(clip, np.concatenate(pcm))
    run = Run(emu, tmp_path, settings_for(emu, "server_vad"), clip, realtime=True,
              duplex=DuplexPolicy.GATED)  # fmt: skip
    ended = await run.run()
    assert ended.code == "input_finished", run.of(ErrorEvent)

    td = sent(emu, "session.update")[0]["session"]["audio"]["input"]["turn_detection"]
    assert td["interrupt_response"] is False  # the client's gate decides, not the server
    lines = run.lines()
    if not cut:
        # issue 14: a refused barge-in is never half-shown: no `you` row, no answer, and the
        # echo is out of the model's context (deleted once the server committed it)
        assert [text for role, text in lines if role == "user"] == ["Hello there."]
        (first,) = run.of(AssistantTextFinal)
        assert not run.of(Interrupted)
        assert sent(emu, "conversation.item.truncate") == []
        assert not first.interrupted and first.text == long_reply
        assert "barge_in_refused" in [w.code for w in run.of(SessionWarning)]
        committed = [c["item_id"] for c in served(emu, "input_audio_buffer.committed")]
        assert len(committed) == 2
        echo_item = committed[1]
        deleted = [d["item_id"] for d in sent(emu, "conversation.item.delete")]
        # the echo, and the assistant item of the service's answer to it
        assert deleted[0] == echo_item and len(deleted) <= 2
        assert deleted == [d["item_id"] for d in served(emu, "conversation.item.deleted")]
        assert "error" not in emu.log.event_types("ws_out")
        assert echo_item not in [e.turn_id for e in run.of(UserSpeechStarted)]
        assert echo_item not in [e.turn_id for e in run.of(UserSpeechStopped)]
        # the service's VAD answered the commit (create_response): that answer was cancelled
        # at once and none of it reached the screen or the speaker
        assert all(c.get("response_id") for c in sent(emu, "response.cancel"))
        assert [d.status for d in run.of(AssistantDone)] == ["completed"]
        return
    assert [text for role, text in lines if role == "user"] == ["Hello there.", "Wait, stop."]
    first, second = run.of(AssistantTextFinal)
    if cut:
        (interrupted,) = run.of(Interrupted)
        assert interrupted.by == "barge_in"
        assert len(sent(emu, "response.cancel")) == 1
        (truncate,) = sent(emu, "conversation.item.truncate")
        assert truncate["audio_end_ms"] == interrupted.played_ms > 0
        assert first.interrupted and long_reply.startswith(first.text) and first.text != long_reply
    assert second.text == "Okay." and not second.interrupted


async def test_key_rejected_by_an_error_event_then_close(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    emu.ws_reject_mode = "error_close"  # accept the socket, send invalid_api_key, close
    emu.faults.ws_reject_status = 401
    emu.faults.ws_reject_count = 5
    clip = write_clip(tmp_path / "q.wav", "Hello")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=False)
    ended = await run.run()
    assert ended.code == "error"
    (error,) = run.of(ErrorEvent)
    assert error.code == "key_rejected" and "rejected the API key" in error.message
    assert len(emu.log.of("ws_open")) == 1 and not run.of(Reconnecting)


async def test_drop_after_a_push_to_talk_commit_resends_the_turn_once(
    emu: OpenAIEmulator, tmp_path: Path
) -> None:
    # the same scripted turn twice: the emulator's script advances per commit, whatever socket
    turn = Turn(user_text="What is the time?", reply="Nearly noon.")
    emu.script.turns = [turn, turn]
    # created, updated, cleared (talk key), committed -> the socket dies before the transcript
    emu.faults.drop_after_events = 4
    clip = write_clip(tmp_path / "q.wav", "What is the time")
    run = Run(emu, tmp_path, settings_for(emu), clip, realtime=False)
    ended = await run.run()
    assert ended.code == "input_finished", run.of(ErrorEvent)
    assert len(run.of(Reconnected)) == 1
    assert run.lines() == [("user", "What is the time?"), ("assistant", "Nearly noon.")]
    second = emu.sessions[1].id
    resent = [e for e in emu.log.of("ws_in") if e.conversation_id == second]
    kinds = [e.event_type for e in resent if e.event_type != "input_audio_buffer.append"]
    assert kinds == ["session.update", "input_audio_buffer.commit", "response.create"]
    first_bytes = sum(
        e.audio_bytes for e in emu.log.of("ws_in") if e.conversation_id == emu.sessions[0].id
    )
    assert sum(e.audio_bytes for e in resent) == first_bytes  # the whole turn, once more
