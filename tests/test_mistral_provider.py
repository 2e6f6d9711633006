"""The Mistral streaming cascade against the loopback emulator, with the real SDK and the real
audio engine (WAV endpoints) driven by the real conversation engine.

Acceptance points of issue 6: push-to-talk turn, two-turn server-VAD conversation on one
conversation id, diarized relabelling that never delays first audio, TTS starting before the
agent stream ends, barge-in, 429-then-200, 401, socket drops, malformed events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.engine.events import (
    AssistantAudio,
    AssistantDone,
    AssistantTextDelta,
    AssistantTextFinal,
    ErrorEvent,
    Event,
    Interrupted,
    Reconnected,
    Reconnecting,
    SessionEnded,
    ToolActivity,
    TurnLatency,
    Usage,
    UserSpeechStarted,
    UserSpeechStopped,
    UserTranscript,
)
from voicetui.engine.session import ConversationEngine
from voicetui.providers.base import ProviderSettings, TurnDetection
from voicetui.providers.mistral import PROVIDER
from voicetui.providers.mistral.agent import CACHE_FILE
from voicetui.testing.emulators.common import Script, Turn, speech_like_pcm
from voicetui.testing.emulators.mistral import (
    REALTIME_MODEL_NO_TURNS,
    MistralEmulator,
)

pytestmark = pytest.mark.asyncio

RATE = 24_000
HELLO = "Hello there, how are you?"
REPLY = "I'm doing well, thank you for asking! How can I help you today?"


def settings_for(
    emu: MistralEmulator, mode: TurnDetection, voice: str = "default", **extras: Any
) -> ProviderSettings:
    return ProviderSettings(
        spec_key="ai-voice-conv.mistral",
        model="mistral-small-latest",
        voice=voice,
        turn_detection=mode,
        max_session_duration_s=600,
        base_url=emu.base_url,
        extras=extras,
    )


def clip(*parts: str | float) -> np.ndarray:
    """Speech-like audio for strings, silence (seconds) for floats."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(speech_like_pcm(part))
        else:
            out.append(np.zeros(int(RATE * part), dtype=np.float32))
    return np.concatenate(out)


@dataclass
class Run:
    events: list[Event] = field(default_factory=list)
    ended: SessionEnded | None = None
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def user_lines(self) -> list[UserTranscript]:
        return [e for e in self.of(UserTranscript) if e.final]


async def converse(
    emu: MistralEmulator,
    tmp_path: Path,
    mode: TurnDetection,
    pcm: np.ndarray,
    *,
    duplex: str = "gated",
    realtime: bool | None = None,
    state_dir: Path | None = None,
    limit_s: float = 40.0,
    hook: Callable[[ConversationEngine, Event], None] | None = None,
    voice: str = "default",
    **extras: Any,
) -> Run:
    """One `voicetui talk`-like session: WAV mic → engine + Mistral provider → WAV speaker."""
    if emu.script.turns == [Turn()]:  # unscripted tests: our standard exchange
        emu.script = Script(turns=[Turn(user_text=HELLO, reply=REPLY)])
    rt = (mode == "server_vad") if realtime is None else realtime
    tmp_path.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up, microseconds
    wav_in, wav_out = tmp_path / "q.wav", tmp_path / "a.wav"
    write_wav_pcm16(wav_in, pcm)
    rig = open_audio(
        AudioOptions(duplex=duplex), input_wav=wav_in, output_wav=wav_out, realtime_input=rt
    )
    engine = ConversationEngine(
        provider=PROVIDER,
        settings=settings_for(emu, mode, voice, **extras),
        api_key="test-key",
        audio_in=rig.input,
        audio_out=rig.output,
        gate=rig.gate,
        state_dir=state_dir or tmp_path,
        end_when_input_ends=True,
        talk_on_connect=mode == "push_to_talk",
    )
    run = Run()
    engine.subscribe(run.events.append)
    if hook is not None:
        engine.subscribe(lambda event: hook(engine, event))
    run.ended = await asyncio.wait_for(engine.run(), limit_s)
    run.audio = read_wav_mono(wav_out) if wav_out.exists() else run.audio
    return run


def reply_samples(text: str) -> int:
    return len(speech_like_pcm(text))


PIECES = ["I'm doing well,", "thank you for asking!", "How can I help you today?"]


def spoken(pieces: list[str]) -> np.ndarray:
    """What the emulator's TTS says for these pieces, one synthesis per piece, in order."""
    return np.concatenate([speech_like_pcm(p) for p in pieces])


def assert_clean(run: Run, emu: MistralEmulator) -> None:
    assert run.ended is not None and run.ended.code == "input_finished", run.ended
    assert not [e for e in run.of(ErrorEvent) if e.fatal]
    assert emu.violations == []
    finals = [e.turn_id for e in run.of(AssistantTextFinal)]
    assert len(finals) == len(set(finals)), "one final line per reply"


# --------------------------------------------------------------------------- push-to-talk


async def test_push_to_talk_turn(mistral_emulator: MistralEmulator, tmp_path: Path) -> None:
    emu = mistral_emulator
    emu.enable_strict()
    emu.script = Script(turns=[Turn(user_text=HELLO, reply=REPLY)])
    run = await converse(emu, tmp_path, "push_to_talk", clip(0.2, HELLO, 0.2))
    assert_clean(run, emu)

    lines = run.user_lines()
    assert lines[0].text == HELLO and not lines[0].relabel
    partials = [e.text for e in run.of(UserTranscript) if not e.final]
    assert partials and partials[0] != HELLO  # the words appeared live, before the end
    finals = [e for e in run.of(AssistantTextFinal) if not e.interrupted]
    assert [e.text for e in finals] == [REPLY]
    assert "".join(e.text for e in run.of(AssistantTextDelta)) == REPLY
    assert [e.status for e in run.of(AssistantDone)] == ["completed"]
    # audio of the emulated length, whole: every TTS piece arrived, in order
    assert len(run.audio) == reply_samples(REPLY)
    assert np.allclose(run.audio, spoken(PIECES), atol=2e-4)
    # one STT socket, one agent, one conversation start, realtime TTS (no REST speech)
    assert len(emu.log.of("ws_open", "/v1/audio/transcriptions/realtime")) == 1
    assert len(emu.log.of("http", "/v1/agents")) == 1
    assert [e.path for e in emu.log.of("http", "/v1/conversations")] == ["/v1/conversations"]
    assert emu.log.of("http", "/v1/audio/speech") == []
    flushes = [
        e
        for e in emu.log.of("ws_in", "/v1/audio/speech/realtime")
        if e.event_type == "input_text.flush"
    ]
    assert len(flushes) == 3  # first clause, then sentences
    # usage: LLM tokens and TTS audio seconds reached the engine
    usage = run.of(Usage)
    assert sum(u.output_tokens for u in usage) > 0
    assert sum(u.audio_seconds for u in usage) >= reply_samples(REPLY) / RATE
    latency = run.of(TurnLatency)
    assert latency and latency[0].first_audio_ms is not None


async def test_agent_is_created_once_and_recreated_when_gone(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    state = tmp_path / "state"
    first = await converse(emu, tmp_path / "1", "push_to_talk", clip(HELLO), state_dir=state)
    assert_clean(first, emu)
    assert (state / CACHE_FILE).is_file()
    second = await converse(emu, tmp_path / "2", "push_to_talk", clip(HELLO), state_dir=state)
    assert_clean(second, emu)

    def creates() -> list[Any]:
        return [e for e in emu.log.of("http", "/v1/agents") if e.method == "POST"]

    assert len(creates()) == 1  # the second launch reused the cached agent id
    checks = [e for e in emu.log.of("http", "/v1/agents/") if e.method == "GET"]
    assert len(checks) == 1 and checks[0].status == 200  # after checking it still exists
    body = creates()[0].body or {}
    assert body["tools"] == [{"type": "web_search"}]
    assert body["completion_args"] == {"temperature": 0.3, "top_p": 0.95}

    emu.forget_agents()  # deleted between launches: the check at connect finds it gone
    third = await converse(emu, tmp_path / "3", "push_to_talk", clip(HELLO), state_dir=state)
    assert_clean(third, emu)
    assert len(creates()) == 2
    assert [e.text for e in third.of(AssistantTextFinal)] == [REPLY]

    def delete_mid_session(engine: ConversationEngine, event: Event) -> None:
        if isinstance(event, UserSpeechStarted):
            emu.forget_agents()  # deleted while connected: the conversation start says 404

    fourth = await converse(
        emu, tmp_path / "4", "push_to_talk", clip(HELLO), state_dir=state, hook=delete_mid_session
    )
    assert_clean(fourth, emu)
    assert len(creates()) == 3
    starts = [e.status for e in emu.log.of("http", "/v1/conversations")]
    assert starts[-2:] == [404, 200]
    assert [e.text for e in fourth.of(AssistantTextFinal)] == [REPLY]


async def test_moderation_guardrail_from_config(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    run = await converse(
        emu,
        tmp_path,
        "push_to_talk",
        clip(HELLO),
        webSearch=False,
        moderation=True,
        moderationThresholds={"selfharm": 0.1},
    )
    assert_clean(run, emu)
    body = next(e.body for e in emu.log.of("http", "/v1/agents") if e.method == "POST") or {}
    assert "tools" not in body
    guard = body["guardrails"][0]
    assert guard["block_on_error"] is True
    assert guard["moderation_llm_v2"]["custom_category_thresholds"] == {"selfharm": 0.1}
    assert guard["moderation_llm_v2"]["action"] == "block"


# --------------------------------------------------------------------------- server VAD


async def test_two_turn_server_vad_conversation(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.enable_strict()
    second_reply = "Why did the chicken cross the road? To get to the other side."
    emu.script = Script(
        turns=[
            Turn(user_text=HELLO, reply=REPLY),
            Turn(user_text="Tell me a joke.", reply=second_reply),
        ]
    )
    emu.timing.audio_pace = 8.0  # TTS faster than real time; playback stays real time
    gap = reply_samples(REPLY) / RATE + 1.2  # the user waits for the reply to finish
    run = await converse(emu, tmp_path, "server_vad", clip(0.3, HELLO, gap, "Tell me a joke.", 0.3))
    assert_clean(run, emu)

    lines = [e for e in run.user_lines() if not e.relabel]
    assert [e.text for e in lines] == [HELLO, "Tell me a joke."]
    assert [e.text for e in run.of(AssistantTextFinal)] == [REPLY, second_reply]
    assert len(run.of(UserSpeechStarted)) == 2 and len(run.of(UserSpeechStopped)) == 2
    assert run.of(Interrupted) == []
    # the second turn continues the same conversation
    convs = emu.log.of("http", "/v1/conversations")
    assert [e.method for e in convs] == ["POST", "POST"]
    assert convs[0].path == "/v1/conversations"
    assert convs[1].path == f"/v1/conversations/{convs[0].conversation_id}"
    assert convs[1].conversation_id == convs[0].conversation_id
    # the service's turn detection was used (turn.* events), one socket for both turns
    assert len(emu.log.of("ws_open", "/v1/audio/transcriptions/realtime")) == 1
    assert emu.log.event_types("ws_out").count("turn.end") == 2
    # audio: both replies in full, in order (silence sits between them)
    first = spoken(PIECES)
    assert np.allclose(run.audio[: len(first)], first, atol=2e-4)
    second = spoken(["Why did the chicken cross the road?", "To get to the other side."])
    rest = run.audio[len(first) :]
    offset = int(np.argmax(np.abs(rest) > 0.01)) - int(np.argmax(np.abs(second) > 0.01))
    assert offset >= 0
    assert np.allclose(rest[offset : offset + len(second)], second, atol=2e-4)


# --------------------------------------------------------------------------- speaker labels


async def test_speaker_labels_relabel_without_delaying_first_audio(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    segments = [("speaker_1", "Hello there,"), ("speaker_2", "how are you?")]
    emu.script = Script(turns=[Turn(user_text=HELLO, segments=segments, reply="Fine, thanks.")])
    # batch transcription (diarization) is slow: 0.8 s; the realtime text arrives long before
    emu.timing.first_transcript_delay_s = 0.8
    emu.timing.first_token_delay_s = 0.05
    # a realtime model without in-stream diarization: the labels come from the batch relabel
    run = await converse(
        emu,
        tmp_path,
        "push_to_talk",
        clip(0.3, HELLO, 0.3, HELLO, 0.2),
        realtime=True,
        transcriptionModel=REALTIME_MODEL_NO_TURNS,
    )
    assert_clean(run, emu)

    relabels = [e for e in run.of(UserTranscript) if e.relabel]
    assert [(e.speaker, e.text, e.segment_index) for e in relabels] == [
        ("speaker_1", "Hello there,", 0),
        ("speaker_2", "how are you?", 1),
    ]
    assert all(e.start is not None and e.end is not None for e in relabels)
    assert relabels[0].start is not None and relabels[0].start >= 0.2  # after the lead silence
    assert relabels[1].end is not None and relabels[0].end is not None
    assert relabels[1].end > relabels[0].end
    # the diarization request went out at the end of the turn, concurrently with the reply,
    # and the first audio did not wait for it
    first_audio = run.of(AssistantAudio)[0].at
    stopped = run.of(UserSpeechStopped)[0].at
    assert first_audio < relabels[0].at
    assert first_audio - stopped < 0.7
    form = emu.log.of("http", "/v1/audio/transcriptions")[0].body or {}
    assert form["diarize"] == "true" and form["timestamp_granularities"] == ["segment"]


# --------------------------------------------------------------------------- streaming


async def test_first_tts_request_starts_before_the_agent_stream_ends(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    long_reply = (
        "Sure, here is a short answer. The weather today is mild and sunny. "
        "Tomorrow brings a few clouds and a light breeze. Enjoy your day."
    )
    emu.script = Script(turns=[Turn(user_text=HELLO, reply=long_reply, tool="web_search")])
    emu.timing.token_interval_s = 0.03
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    conv_end = emu.log.of("http_end", "/v1/conversations")[0].at
    tts_in = [
        e
        for e in emu.log.of("ws_in", "/v1/audio/speech/realtime")
        if e.event_type.startswith("input_text.")
    ]
    assert tts_in[0].at < conv_end - 0.3  # speech started with the first clause
    assert (tts_in[0].body or {}).get("text", "").strip() == "Sure, here is a short answer."
    first_audio_out = next(
        e.at
        for e in emu.log.of("ws_out", "/v1/audio/speech/realtime")
        if e.event_type == "speech.audio.delta"
    )
    assert first_audio_out < conv_end
    tools = run.of(ToolActivity)
    assert [(t.name, t.status) for t in tools] == [
        ("web_search", "started"),
        ("web_search", "done"),
    ]
    assert tools[0].label == "searching the web…"
    assert len(run.audio) == reply_samples(long_reply)


# --------------------------------------------------------------------------- barge-in


async def test_barge_in_flushes_playback_and_cancels_streams(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    long_reply = " ".join(["This is a long answer that keeps going, sentence after sentence."] * 6)
    emu.script = Script(
        turns=[
            Turn(user_text=HELLO, reply=long_reply),
            Turn(user_text="Stop please.", reply="Okay."),
        ]
    )
    emu.timing.token_interval_s = 0.05  # the agent is still writing when the user cuts in
    emu.timing.audio_pace = 1.0
    run = await converse(
        emu, tmp_path, "server_vad", clip(0.3, HELLO, 2.0, "Stop please.", 3.0), duplex="full"
    )
    assert_clean(run, emu)
    interrupted = run.of(Interrupted)
    assert len(interrupted) == 1 and interrupted[0].by == "barge_in"
    first_id = interrupted[0].turn_id
    assert 0 < interrupted[0].played_ms < reply_samples(long_reply) * 1000 / RATE
    cut = [e for e in run.of(AssistantTextFinal) if e.turn_id == first_id]
    assert cut[-1].interrupted and cut[-1].text and long_reply.startswith(cut[-1].text)
    assert any(d.turn_id == first_id and d.status == "cancelled" for d in run.of(AssistantDone))
    # the in-flight agent stream was abandoned early and the speech socket closed
    assert len(run.of(AssistantTextDelta)) < len(long_reply.split()) + 1
    speech_closes = emu.log.of("ws_close", "/v1/audio/speech/realtime")
    assert speech_closes and speech_closes[0].at < interrupted[0].at + 0.5
    # the second turn still got its reply, on the same conversation
    finals = [e.text for e in run.of(AssistantTextFinal) if not e.interrupted]
    assert finals == ["Okay."]
    assert len(run.audio) < reply_samples(long_reply)


async def test_interrupt_key_stops_the_reply(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    long_reply = " ".join(["Here is a long reply that goes on, and on, for a while."] * 5)
    emu.script = Script(turns=[Turn(user_text=HELLO, reply=long_reply)])
    emu.timing.token_interval_s = 0.05
    emu.timing.audio_pace = 1.0
    pressed: list[float] = []

    def press_interrupt(engine: ConversationEngine, event: Event) -> None:
        if isinstance(event, AssistantAudio) and not pressed:
            pressed.append(time.monotonic())
            loop = asyncio.get_running_loop()
            loop.call_later(0.4, lambda: loop.create_task(engine.interrupt()))

    run = await converse(
        emu, tmp_path, "push_to_talk", clip(HELLO), realtime=True, hook=press_interrupt
    )
    assert_clean(run, emu)
    interrupted = run.of(Interrupted)
    assert len(interrupted) == 1 and interrupted[0].by == "user_key"
    assert 0 < interrupted[0].played_ms < 1500
    final = run.of(AssistantTextFinal)[-1]
    assert final.interrupted and long_reply.startswith(final.text)
    assert len(final.text) < len(long_reply)
    assert [d.status for d in run.of(AssistantDone)] == ["cancelled"]
    # playback stopped: far less audio than the reply, and the agent stream was abandoned
    assert len(run.audio) < reply_samples(long_reply) / 3
    assert len(run.of(AssistantTextDelta)) < len(long_reply.split())


async def test_push_to_talk_keeps_an_utterance_the_service_closes_mid_turn(
    mistral_emulator: MistralEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some services close an utterance on a pause even without turn detection: while the key
    is down that text belongs to the same turn (no early reply)."""
    from voicetui.testing.emulators import mistral_realtime

    emu = mistral_emulator
    emu.script = Script(turns=[Turn(user_text="Hello there.", reply="Fine."),
                               Turn(user_text="How are you?", reply="Fine.")])  # fmt: skip
    original = mistral_realtime.TranscriptionSocket.window
    windows = {"n": 0}

    def window(self: Any, loud: bool) -> None:
        original(self, loud)
        windows["n"] += 1
        if windows["n"] == 60:  # 1.2 s in: the service ends the utterance on its own
            self.finish()

    monkeypatch.setattr(mistral_realtime.TranscriptionSocket, "window", window)
    run = await converse(emu, tmp_path, "push_to_talk", clip(0.2, "Hello there.", 0.6, HELLO))
    assert_clean(run, emu)
    dones = emu.log.event_types("ws_out").count("transcription.done")
    assert dones == 2  # one on its own, one for the flush
    lines = [e.text for e in run.user_lines() if not e.relabel]
    assert lines == ["Hello there. How are you?"]
    assert len(emu.log.of("http", "/v1/conversations")) == 1  # one turn, one reply
    assert [e.text for e in run.of(AssistantTextFinal)] == ["Fine."]


async def test_local_vad_ends_turns_when_the_service_does_not(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.script = Script(
        turns=[Turn(user_text=HELLO, reply="Fine."), Turn(user_text="Bye now.", reply="Bye.")]
    )
    run = await converse(
        emu, tmp_path, "server_vad", clip(0.3, HELLO, 1.5, "Bye now.", 0.3),
        serverTurnDetection=False,
    )  # fmt: skip
    assert_clean(run, emu)
    assert emu.log.event_types("ws_out").count("turn.end") == 0  # the service never ended one
    flushes = emu.log.event_types("ws_in").count("input_audio.flush")
    assert flushes == 2  # the local VAD ended both turns and flushed
    assert [e.text for e in run.user_lines() if not e.relabel] == [HELLO, "Bye now."]
    assert [e.text for e in run.of(AssistantTextFinal)] == ["Fine.", "Bye."]
    assert len(run.of(UserSpeechStopped)) == 2


# --------------------------------------------------------------------------- failures


async def test_429_then_200_retries_honouring_retry_after(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/conversations"
    emu.faults.http_status = 429
    emu.faults.http_status_count = 1
    emu.faults.retry_after_s = 0.3
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    attempts = emu.log.of("http", "/v1/conversations")
    assert [e.status for e in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 0.29
    assert [e.text for e in run.of(AssistantTextFinal)] == [REPLY]


async def test_persistent_503_gives_a_clear_error(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/conversations"
    emu.faults.http_status = 503
    emu.faults.http_status_count = 10
    emu.faults.retry_after_s = None
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    errors = run.of(ErrorEvent)
    assert errors and "server error" in errors[0].message and "gave up" in errors[0].message
    assert "\n" not in errors[0].message
    assert [d.status for d in run.of(AssistantDone)] == ["failed"]
    assert len(emu.log.of("http", "/v1/conversations")) == 4


@pytest.mark.parametrize("where", ["rest", "websocket"])
async def test_401_is_key_rejected_without_retry(
    mistral_emulator: MistralEmulator, tmp_path: Path, where: str
) -> None:
    emu = mistral_emulator
    if where == "rest":
        emu.fault_scope = "/v1/agents"
        emu.faults.http_status = 401
        emu.faults.http_status_count = 5
    else:
        emu.fault_scope = "/v1/audio/transcriptions/realtime"
        emu.faults.ws_reject_status = 401
        emu.faults.ws_reject_count = 5
    started = time.monotonic()
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert run.ended is not None and run.ended.code == "error"
    fatal = [e for e in run.of(ErrorEvent) if e.fatal]
    assert fatal and fatal[0].code == "key_rejected"
    assert "rejected the API key" in fatal[0].message and "voicetui keys set" in fatal[0].message
    if where == "rest":
        assert len(emu.log.of("http", "/v1/agents")) == 1
    else:
        assert len(emu.log.of("ws_reject")) == 1
    assert time.monotonic() - started < 10


async def test_transcription_socket_drop_reconnects_and_carries_on(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/audio/transcriptions/realtime"
    emu.faults.drop_after_events = 3  # session.created, session.updated, one delta
    emu.script = Script(turns=[Turn(user_text=HELLO, reply="Fine, thanks.")])
    run = await converse(emu, tmp_path, "push_to_talk", clip(0.2, HELLO, 0.2), realtime=True)
    assert_clean(run, emu)
    assert len(run.of(Reconnecting)) == 1 and len(run.of(Reconnected)) == 1
    assert len(emu.log.of("ws_open", "/v1/audio/transcriptions/realtime")) == 2
    assert [e.text for e in run.user_lines() if not e.relabel] == [HELLO]
    assert [e.text for e in run.of(AssistantTextFinal)] == ["Fine, thanks."]


async def test_speech_socket_drop_falls_back_to_rest_without_repeating(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/audio/speech/realtime"
    emu.faults.drop_after_events = 6  # session.created/updated + a few audio deltas
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    assert emu.log.of("ws_drop", "/v1/audio/speech/realtime")
    assert emu.log.of("http", "/v1/audio/speech")  # the rest went over REST
    # nothing heard twice, nothing lost: exactly the reply's audio
    assert len(run.audio) == reply_samples(REPLY)
    assert np.allclose(run.audio, spoken(PIECES), atol=2e-4)


async def test_agent_stream_cut_mid_reply_fetches_the_rest_and_speaks_it(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/conversations"
    emu.faults.drop_after_events = 8  # started + 7 words, then the body is cut
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert run.ended is not None and run.ended.code == "input_finished"
    assert emu.log.of("sse_drop", "/v1/conversations")
    # the service keeps the whole reply: the rest is fetched from the conversation
    assert [e for e in emu.log.of("http") if e.path.endswith("/messages")]
    assert run.of(ErrorEvent) == []
    (final,) = run.of(AssistantTextFinal)
    assert final.text == REPLY and not final.interrupted
    assert [d.status for d in run.of(AssistantDone)] == ["completed"]
    assert len(run.audio) >= len(spoken(PIECES)) - RATE // 100  # the whole reply was spoken


async def test_speech_socket_closed_while_idle_is_reopened(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    closed: list[bool] = []

    async def close_warm_socket(engine: ConversationEngine) -> None:
        session: Any = engine._session
        for _ in range(1000):
            if session._warm is not None:
                break
            await asyncio.sleep(0.005)
        conn = await session._warm.task
        await conn._websocket.close()  # the service dropped the idle socket
        closed.append(True)

    def on_start(engine: ConversationEngine, event: Event) -> None:
        if isinstance(event, UserSpeechStarted):
            asyncio.get_running_loop().create_task(close_warm_socket(engine))

    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO), hook=on_start)
    assert_clean(run, emu)
    assert closed == [True]
    opens = emu.log.of("ws_open", "/v1/audio/speech/realtime")
    assert len(opens) == 2  # the warm one (closed) and a fresh one at reply time
    assert emu.log.of("http", "/v1/audio/speech") == []  # no REST fallback was needed
    assert np.allclose(run.audio, spoken(PIECES), atol=2e-4)


async def test_realtime_speech_unavailable_uses_rest_per_sentence(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/audio/speech/realtime"
    emu.faults.ws_reject_status = 404
    emu.faults.ws_reject_count = 10
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    speech = emu.log.of("http", "/v1/audio/speech")
    assert [(e.body or {}).get("input") for e in speech] == PIECES
    assert all((e.body or {}).get("response_format") == "pcm" for e in speech)
    assert len(run.audio) == reply_samples(REPLY)


async def test_unknown_voice_is_a_clear_non_fatal_error(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO), voice="no_such")
    assert run.ended is not None and run.ended.code == "input_finished"
    errors = run.of(ErrorEvent)
    assert len(errors) == 1 and not errors[0].fatal
    assert "does not know the voice 'no_such'" in errors[0].message
    closes = emu.log.of("ws_close", "/v1/audio/speech/realtime")
    assert closes and closes[0].status == 4404  # the socket refused it first
    assert [d.status for d in run.of(AssistantDone)] == ["failed"]


@pytest.mark.parametrize("fault", ["malformed", "unknown"])
async def test_malformed_and_unknown_events_are_ignored(
    mistral_emulator: MistralEmulator, tmp_path: Path, fault: str
) -> None:
    emu = mistral_emulator
    if fault == "malformed":
        emu.faults.malformed_after_events = 2
    else:
        emu.faults.unknown_after_events = 2
    emu.fault_scope = "/v1/audio/transcriptions/realtime"
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    assert emu.log.of(f"ws_{fault}", "/v1/audio/transcriptions/realtime")
    assert [e.text for e in run.user_lines() if not e.relabel] == [HELLO]
    assert [e.text for e in run.of(AssistantTextFinal)] == [REPLY]
    assert run.of(ErrorEvent) == []


async def test_malformed_conversation_event_is_ignored(
    mistral_emulator: MistralEmulator, tmp_path: Path
) -> None:
    emu = mistral_emulator
    emu.fault_scope = "/v1/conversations"
    emu.faults.unknown_after_events = 3
    run = await converse(emu, tmp_path, "push_to_talk", clip(HELLO))
    assert_clean(run, emu)
    assert emu.log.of("sse_unknown", "/v1/conversations")
    assert [e.text for e in run.of(AssistantTextFinal)] == [REPLY]


# --------------------------------------------------------------------------- voices


async def test_list_voices_follows_paging(
    mistral_emulator: MistralEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicetui.providers.mistral import provider as provider_module

    monkeypatch.setattr(provider_module, "VOICE_PAGE_SIZE", 3)
    mistral_emulator.voices = mistral_emulator.voices[:7]  # three pages of three
    voices = await PROVIDER.list_voices(settings_for(mistral_emulator, "server_vad"), "k")
    assert [v.id for v in voices] == [v["id"] for v in mistral_emulator.voices]
    assert voices[0].name and voices[0].languages
    assert len(mistral_emulator.log.of("http", "/v2/audio/voices")) == 3
