"""Fidelity tests: the real ``mistralai`` SDK against the Mistral loopback emulator.

Every test runs with strict checking on: each event/body the emulator sends is validated
strictly into the SDK's typed model for its type, and the test fails on any violation.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from mistralai.client import Mistral, errors, models

from voicetui.testing.emulators.common import RATE, Script, Turn, speech_like_pcm
from voicetui.testing.emulators.mistral import MistralEmulator

KEY = "sk-test-very-secret-4242"
STT_MODEL = "voxtral-mini-transcribe-realtime-3"
TTS_MODEL = "voxtral-mini-tts-latest"
PCM16K = models.AudioFormat(encoding="pcm_s16le", sample_rate=16000)


@pytest_asyncio.fixture
async def emu(mistral_emulator: MistralEmulator) -> AsyncIterator[MistralEmulator]:
    """The async emulator fixture with strict checking; fails the test on any violation."""
    checker = mistral_emulator.enable_strict()
    yield mistral_emulator
    while _CLIENTS:  # close the SDK's HTTP connections before the server goes away
        await _CLIENTS.pop().__aexit__(None, None, None)
    assert mistral_emulator.violations == []
    assert checker.checked > 0
    text = repr(mistral_emulator.log.entries)
    assert KEY not in text and "Bearer" not in text


_CLIENTS: list[Mistral] = []


def client(emu: MistralEmulator, timeout_ms: int = 5000, **kw: Any) -> Mistral:
    """An SDK client on the emulator, closed by the ``emu`` fixture."""
    sdk = Mistral(api_key=KEY, server_url=emu.base_url, timeout_ms=timeout_ms, **kw)
    _CLIENTS.append(sdk)
    return sdk


def pcm16(text: str, rate: int = 16000, lead_s: float = 0.2, tail_s: float = 0.6) -> bytes:
    """Speech-like audio for ``text`` with leading/trailing silence, as pcm_s16le."""
    speech = speech_like_pcm(text, rate=rate)
    pcm = np.concatenate(
        [np.zeros(int(rate * lead_s), np.float32), speech, np.zeros(int(rate * tail_s), np.float32)]
    )
    return (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()


def wav_of(text: str, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16(text, rate, lead_s=0.3, tail_s=0.3))
    return buf.getvalue()


async def feed(conn: Any, data: bytes, chunk: int = 1280) -> None:
    for i in range(0, len(data), chunk):
        await conn.send_audio(data[i : i + chunk])
    await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], limit_s: float = 3.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def f32_samples(chunks: list[str]) -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(c) for c in chunks), "<f4")


# -- REST --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_models_and_voices_paging(emu: MistralEmulator) -> None:
    c = client(emu)
    listed = await c.models.list_async()
    ids = [m.id for m in listed.data or []]
    assert "mistral-small-latest" in ids and TTS_MODEL in ids and STT_MODEL in ids

    emu.voices = emu.voices[:7]  # the emulator's own presets: three pages of three
    page = await c.audio.voices.search_async(page_size=3)
    seen: list[str] = []
    pages = 0
    while page is not None:
        pages += 1
        seen += [v.id for v in page.result.data]
        page = await page.next()
    assert pages == 3 and len(seen) == len(set(seen)) == len(emu.voices)
    assert {"gb_jane_neutral", "fr_marie_neutral", "en_paul_neutral"} <= set(seen)
    tokens = [e.body.get("page_token") for e in emu.log.of("http", "/v2/audio/voices") if e.body]
    assert tokens == [None, "cursor_3", "cursor_6"]

    french = await c.audio.voices.search_async(language=["fr"], gender=["female"])
    assert [v.id for v in french.result.data] == ["fr_marie_neutral"]
    voice = await c.audio.voices.get_async(voice_id="gb_oliver_excited")
    assert voice.type == "preset" and voice.gender == "male"
    with pytest.raises(errors.SDKError) as err:
        await c.audio.voices.get_async(voice_id="nobody")
    assert err.value.status_code == 404
    sample = await c.audio.voices.get_sample_audio_async(voice_id="en_paul_neutral")
    with wave.open(io.BytesIO(await sample.aread())) as w:
        assert w.getframerate() == RATE and w.getnframes() > RATE // 2
    await sample.aclose()


@pytest.mark.asyncio
async def test_cascade_turn_rest(emu: MistralEmulator) -> None:
    """Diarized transcription → agent (web search, guardrail) → two streamed conversation
    turns on one conversation id → streamed PCM speech of the scripted length."""
    emu.script = Script(
        turns=[
            Turn(
                segments=[("speaker_1", "What's the weather in Paris?"), ("speaker_2", "Yes.")],
                reply="It is sunny in Paris today.",
                tool="web_search",
            ),
            Turn(reply="You are welcome."),
        ]
    )
    c = client(emu)
    clip = wav_of("What's the weather in Paris? Yes.")
    tr = await c.audio.transcriptions.complete_async(
        model="voxtral-mini-latest",
        file={"file_name": "turn.wav", "content": clip},
        diarize=True,
        timestamp_granularities=["segment"],
    )
    segs = tr.segments or []
    assert [(s.speaker_id, s.text) for s in segs] == [
        ("speaker_1", "What's the weather in Paris?"),
        ("speaker_2", "Yes."),
    ]
    # spread over the speech found in the clip (0.3 s of silence each side)
    assert segs[0].start is not None and 0.25 <= segs[0].start <= 0.35
    assert segs[0].end is not None and segs[1].start is not None and segs[1].end is not None
    assert segs[0].end < segs[1].start < segs[1].end <= len(clip) / 32000
    entry = emu.log.of("http", "/v1/audio/transcriptions")[0]
    assert entry.body is not None and entry.body["diarize"] == "true"
    assert entry.body["timestamp_granularities"] == ["segment"]
    assert entry.audio_bytes == len(clip)

    agent = await c.beta.agents.create_async(
        model="mistral-small-latest",
        name="voice-console",
        instructions="Be brief.",
        tools=[{"type": "web_search"}],
        completion_args={"temperature": 0.3, "top_p": 0.95},
        guardrails=[{"block_on_error": True, "moderation_llm_v2": {"action": "block"}}],
    )
    assert agent.id.startswith("ag_") and agent.completion_args is not None
    assert agent.completion_args.temperature == 0.3
    assert agent.guardrails and agent.guardrails[0].moderation_llm_v2 is not None
    assert isinstance(agent.tools and agent.tools[0], models.WebSearchTool)

    kinds: list[str] = []
    text = ""
    conversation_id = ""
    stream = await c.beta.conversations.start_stream_async(agent_id=agent.id, inputs=tr.text)
    async with stream:
        async for ev in stream:
            kinds.append(type(ev.data).__name__)
            if isinstance(ev.data, models.ResponseStartedEvent):
                conversation_id = ev.data.conversation_id
            elif isinstance(ev.data, models.MessageOutputEvent):
                assert isinstance(ev.data.content, str)
                text += ev.data.content
            elif isinstance(ev.data, models.ResponseDoneEvent):
                assert ev.data.usage.connectors == {"web_search": 1}
    assert kinds[:4] == [
        "ResponseStartedEvent",
        "ToolExecutionStartedEvent",
        "ToolExecutionDeltaEvent",
        "ToolExecutionDoneEvent",
    ]
    assert kinds[-1] == "ResponseDoneEvent" and text == "It is sunny in Paris today."

    second = ""
    stream = await c.beta.conversations.append_stream_async(
        conversation_id=conversation_id, inputs="Thanks!"
    )
    async with stream:
        async for ev in stream:
            if isinstance(ev.data, models.MessageOutputEvent) and isinstance(ev.data.content, str):
                second += ev.data.content
    assert second == "You are welcome."
    convs = [e for e in emu.log.of("http", "/v1/conversations")]
    assert [e.path for e in convs] == ["/v1/conversations", f"/v1/conversations/{conversation_id}"]
    assert {e.conversation_id for e in convs} == {conversation_id}
    assert emu.conversations[conversation_id][-2]["content"] == "Thanks!"

    chunks: list[str] = []
    usage = None
    speech = await c.audio.speech.complete_async(
        input=second,
        model=TTS_MODEL,
        voice_id="gb_jane_neutral",
        response_format="pcm",
        stream=True,
    )
    async with speech:
        async for ev in speech:
            if isinstance(ev.data, models.SpeechStreamAudioDelta):
                chunks.append(ev.data.audio_data)
            elif isinstance(ev.data, models.SpeechStreamDone):
                usage = ev.data.usage
    audio = f32_samples(chunks)
    assert usage is not None and len(chunks) > 1
    assert len(audio) == len(speech_like_pcm(second))
    assert abs(len(audio) / RATE - len(speech_like_pcm(second)) / RATE) < 1e-6
    assert 0.05 < float(np.max(np.abs(audio))) <= 1.0

    plain = await c.audio.speech.complete_async(
        input="Hi.", model=TTS_MODEL, voice_id="gb_jane_neutral", response_format="wav"
    )
    with wave.open(io.BytesIO(base64.b64decode(plain.audio_data))) as w:
        assert w.getframerate() == RATE and w.getnframes() == len(speech_like_pcm("Hi."))
    with pytest.raises(errors.HTTPValidationError) as invalid:
        await c.audio.speech.complete_async(input=" ", model=TTS_MODEL, stream=True)
    assert invalid.value.data.detail and invalid.value.data.detail[0].msg


@pytest.mark.asyncio
async def test_transcription_and_conversation_json_and_sse_variants(emu: MistralEmulator) -> None:
    emu.script = Script(
        turns=[Turn(user_text="Hello there friend.", reply="Hi! Nice to meet you.")]
    )
    c = client(emu)
    stream = await c.audio.transcriptions.stream_async(
        model="voxtral-mini-latest",
        file={"file_name": "a.wav", "content": wav_of("Hello there friend.")},
        timestamp_granularities=["segment"],
    )
    kinds: list[str] = []
    text = ""
    async with stream:
        async for ev in stream:
            kinds.append(ev.event)
            if isinstance(ev.data, models.TranscriptionStreamTextDelta):
                text += ev.data.text
            elif isinstance(ev.data, models.TranscriptionStreamDone):
                assert ev.data.text == "Hello there friend." and ev.data.language == "en"
    assert text == "Hello there friend."
    assert kinds[0] == "transcription.language" and kinds[-1] == "transcription.done"
    assert "transcription.segment" in kinds

    reply = await c.beta.conversations.start_async(model="mistral-small-latest", inputs="hi")
    assert reply.outputs and isinstance(reply.outputs[-1], models.MessageOutputEntry)
    content = reply.outputs[-1].content
    assert isinstance(content, list) and isinstance(content[0], models.TextChunk)
    assert content[0].text == "Hi! Nice to meet you."
    again = await c.beta.conversations.append_async(
        conversation_id=reply.conversation_id, inputs=[{"role": "user", "content": "and?"}]
    )
    assert again.conversation_id == reply.conversation_id


@pytest.mark.asyncio
async def test_unknown_agent_and_conversation_are_404(emu: MistralEmulator) -> None:
    c = client(emu)
    agent = await c.beta.agents.create_async(model="mistral-small-latest", name="a")
    assert (await c.beta.agents.get_async(agent_id=agent.id)).id == agent.id
    listed = await c.beta.agents.list_pages_async(page_size=5)
    assert [a.id for a in listed.result.data] == [agent.id]
    with pytest.warns(DeprecationWarning):
        assert [a.id for a in await c.beta.agents.list_async()] == [agent.id]
    emu.forget_agents()
    with pytest.raises(errors.SDKError) as err:
        await c.beta.conversations.start_stream_async(agent_id=agent.id, inputs="hi")
    assert err.value.status_code == 404
    with pytest.raises(errors.SDKError) as err:
        await c.beta.agents.get_async(agent_id=agent.id)
    assert err.value.status_code == 404
    with pytest.raises(errors.SDKError) as err:
        await c.beta.conversations.append_stream_async(conversation_id="conv_nope", inputs="hi")
    assert err.value.status_code == 404


@pytest.mark.asyncio
async def test_stage_delays_and_token_pacing(emu: MistralEmulator) -> None:
    emu.timing.first_token_delay_s = 0.15
    emu.timing.token_interval_s = 0.02
    emu.timing.first_audio_delay_s = 0.1
    emu.timing.audio_pace = 8.0  # eight times real time
    emu.script = Script(turns=[Turn(reply="one two three four five")])
    c = client(emu)
    t0 = time.monotonic()
    stamps: list[float] = []
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        async for ev in stream:
            if isinstance(ev.data, models.MessageOutputEvent):
                stamps.append(time.monotonic() - t0)
    assert len(stamps) == 5 and 0.14 <= stamps[0] < 0.6
    assert stamps[-1] - stamps[0] >= 4 * 0.02 * 0.9

    t0 = time.monotonic()
    first = None
    speech = await c.audio.speech.complete_async(
        input="one two three four five", model=TTS_MODEL, voice_id="en_paul_neutral",
        response_format="pcm", stream=True,
    )  # fmt: skip
    async with speech:
        async for ev in speech:
            if first is None and isinstance(ev.data, models.SpeechStreamAudioDelta):
                first = time.monotonic() - t0
    total = time.monotonic() - t0
    duration = len(speech_like_pcm("one two three four five")) / RATE
    assert first is not None and 0.09 <= first < 0.5
    assert total >= 0.1 + duration / 8.0 * 0.8


# -- realtime transcription ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_realtime_stt_push_to_talk_flush_keeps_socket(emu: MistralEmulator) -> None:
    emu.script = Script(
        turns=[Turn(user_text="Hello, how are you doing today?"), Turn(user_text="Fine thanks.")]
    )
    emu.timing.first_transcript_delay_s = 0.05
    c = client(emu)
    conn = await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    events: list[Any] = []
    dones: list[str] = []

    async def reader() -> None:
        async for ev in conn:
            events.append(ev)
            if isinstance(ev, models.TranscriptionStreamDone):
                dones.append(ev.text)

    task = asyncio.create_task(reader())
    first = pcm16("Hello, how are you doing today?", tail_s=0.0)
    await feed(conn, first)
    await until(lambda: any(isinstance(e, models.TranscriptionStreamTextDelta) for e in events))
    partial = [e.text for e in events if isinstance(e, models.TranscriptionStreamTextDelta)]
    assert dones == []  # deltas arrive while audio is received, before any flush
    await conn.flush_audio()
    await until(lambda: bool(dones))
    assert dones == ["Hello, how are you doing today?"]
    assert not conn.is_closed

    await feed(conn, pcm16("Fine thanks.", tail_s=0.0))
    await conn.flush_audio()
    await conn.end_audio()
    await asyncio.wait_for(task, 3)
    assert dones[:2] == ["Hello, how are you doing today?", "Fine thanks."]
    deltas = [e.text for e in events if isinstance(e, models.TranscriptionStreamTextDelta)]
    assert "".join(deltas) == "Hello, how are you doing today?Fine thanks."
    assert partial  # at least one delta came before the flush
    assert isinstance(events[0], models.RealtimeTranscriptionSessionCreated)
    assert emu.log.of("ws_close")[-1].status == 1000
    received = sum(e.audio_bytes for e in emu.log.of("ws_in", "/v1/audio/transcriptions"))
    assert received == len(first) + len(pcm16("Fine thanks.", tail_s=0.0))


@pytest.mark.asyncio
async def test_realtime_stt_turn_detection_from_audio_energy(emu: MistralEmulator) -> None:
    emu.script = Script(turns=[Turn(user_text="Hello, how are you?"), Turn(user_text="Good.")])
    c = client(emu)
    conn = await c.audio.realtime.connect(
        model=STT_MODEL, audio_format=PCM16K, turn_detection={"min_silence_ms": 300}
    )
    audio = pcm16("Hello, how are you?", lead_s=0.4, tail_s=0.6) + pcm16("Good.", 16000, 0, 0.6)
    events: list[Any] = []

    async def pump() -> None:
        await feed(conn, audio)
        await conn.end_audio()

    pumper = asyncio.create_task(pump())
    async for ev in conn:
        events.append(ev)
    await pumper
    updated = [e for e in events if isinstance(e, models.RealtimeTranscriptionSessionUpdated)]
    assert updated and updated[0].session.turn_detection is not None
    assert updated[0].session.turn_detection.min_silence_ms == 300
    seq = [
        type(e).__name__
        for e in events
        if isinstance(
            e, models.TurnDetectionStartEvent | models.TurnDetectionEndEvent
            | models.TranscriptionStreamDone,
        )
    ]  # fmt: skip
    assert seq == [
        "TurnDetectionStartEvent",
        "TurnDetectionEndEvent",
        "TranscriptionStreamDone",
        "TurnDetectionStartEvent",
        "TurnDetectionEndEvent",
        "TranscriptionStreamDone",
        "TranscriptionStreamDone",  # the final done answering input_audio.end
    ]
    starts = [e.time_s for e in events if isinstance(e, models.TurnDetectionStartEvent)]
    ends = [e for e in events if isinstance(e, models.TurnDetectionEndEvent)]
    first_len = len(speech_like_pcm("Hello, how are you?", rate=16000)) / 16000
    assert abs(starts[0] - 0.4) < 0.08
    assert ends[0].end_reason == "threshold"
    # speech ends at 0.4 + len; the end is decided after min_silence of silence
    assert 0.4 + first_len + 0.25 <= ends[0].time_s <= 0.4 + first_len + 0.45
    dones = [e.text for e in events if isinstance(e, models.TranscriptionStreamDone)]
    assert dones == ["Hello, how are you?", "Good.", ""]
    deltas = [e.text for e in events if isinstance(e, models.TranscriptionStreamTextDelta)]
    assert len(deltas) == 5 and "".join(deltas) == "Hello, how are you?Good."
    # the first turn's words came before its turn.end: they follow the audio, not the end
    first_end = next(i for i, e in enumerate(events) if isinstance(e, models.TurnDetectionEndEvent))
    early = [e for e in events[:first_end] if isinstance(e, models.TranscriptionStreamTextDelta)]
    assert len(early) >= 2


@pytest.mark.asyncio
async def test_realtime_stt_eager_end_then_resume(emu: MistralEmulator) -> None:
    emu.script = Script(turns=[Turn(user_text="Wait wait, go on.")])
    c = client(emu)
    conn = await c.audio.realtime.connect(
        model=STT_MODEL, audio_format=PCM16K, turn_detection={"min_silence_ms": 500}
    )
    # a 0.35 s pause: longer than half of min_silence (eager end) but shorter than min_silence
    audio = pcm16("Wait wait,", lead_s=0.1, tail_s=0.35) + pcm16("go on.", 16000, 0, 0.8)
    await feed(conn, audio)
    await conn.end_audio()
    names = [type(ev).__name__ async for ev in conn]
    turn_events = [n for n in names if n.startswith("TurnDetection")]
    assert turn_events[0] == "TurnDetectionStartEvent"
    assert "TurnDetectionEagerEndEvent" in turn_events
    i = turn_events.index("TurnDetectionEagerEndEvent")
    assert turn_events[i + 1] == "TurnDetectionResumeEvent"
    assert turn_events[-1] == "TurnDetectionEndEvent"
    assert turn_events.count("TurnDetectionStartEvent") == 1


@pytest.mark.asyncio
async def test_realtime_stt_formats_silence_and_late_update(emu: MistralEmulator) -> None:
    emu.script = Script(turns=[Turn(user_text="First words."), Turn(user_text="Second.")])
    c = client(emu)
    conn = await c.audio.realtime.connect(
        model=STT_MODEL,
        audio_format=models.AudioFormat(encoding="pcm_s16le", sample_rate=24000),
        turn_detection={"min_silence_ms": 300},
    )
    await feed(conn, bytes(24000 * 2))  # one second of digital silence: no turn
    await conn.update_session(audio_format=PCM16K)  # too late once audio was received
    await conn.end_audio()
    events = [ev async for ev in conn]
    assert not any(isinstance(e, models.TurnDetectionStartEvent) for e in events)
    done = [e for e in events if isinstance(e, models.TranscriptionStreamDone)]
    assert len(done) == 1 and done[0].text == ""
    errs = [e for e in events if isinstance(e, models.RealtimeTranscriptionError)]
    assert len(errs) == 1 and errs[0].error.code == 4003

    # push-to-talk: a flush of silence only gives an empty final and consumes no turn;
    # float32 24 kHz speech then yields the first scripted turn
    f32 = models.AudioFormat(encoding="pcm_f32le", sample_rate=24000)
    conn = await c.audio.realtime.connect(model=STT_MODEL, audio_format=f32)
    await feed(conn, np.zeros(4800, "<f4").tobytes())
    await conn.flush_audio()
    await feed(conn, speech_like_pcm("First words.").astype("<f4").tobytes())
    await conn.end_audio()
    texts = [e.text async for e in conn if isinstance(e, models.TranscriptionStreamDone)]
    assert texts == ["", "First words."]


# -- realtime speech -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_realtime_speech_append_flush_end(emu: MistralEmulator) -> None:
    emu.timing.first_audio_delay_s = 0.05
    c = client(emu)
    conn = await c.audio.realtime_speech.connect(
        model=TTS_MODEL, voice_id="fr_marie_neutral", response_format="pcm"
    )
    await conn.send_text("Hello there, ")
    await conn.flush()
    await conn.send_text("how are")
    await conn.flush(text=" you?")
    await conn.end()
    chunks: list[str] = []
    done = None
    voice = None
    async for ev in conn:
        if isinstance(ev, models.SpeechStreamAudioDelta):
            chunks.append(ev.audio_data)
        elif isinstance(ev, models.SpeechStreamDone):
            done = ev
        elif isinstance(ev, models.RealtimeSpeechSessionUpdated):
            voice = ev.session.voice
    assert voice == "fr_marie_neutral" and done is not None
    expected = len(speech_like_pcm("Hello there, ")) + len(speech_like_pcm("how are you?"))
    assert len(f32_samples(chunks)) == expected
    sent = emu.log.event_types("ws_in")
    assert sent[-5:] == [
        "input_text.append",
        "input_text.flush",
        "input_text.append",
        "input_text.flush",
        "input_text.end",
    ]
    assert emu.log.of("ws_close")[-1].status == 1000


@pytest.mark.asyncio
async def test_realtime_speech_unknown_voice_closes_4404(emu: MistralEmulator) -> None:
    from mistralai.extra.exceptions import RealtimeSpeechException

    c = client(emu)
    conn = await c.audio.realtime_speech.connect(model=TTS_MODEL, voice_id="nobody")
    with pytest.raises(RealtimeSpeechException) as err:
        async for _ in conn:
            pass
    assert err.value.code == 4404


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 429, 500])
async def test_forced_http_status(emu: MistralEmulator, status: int) -> None:
    emu.faults.http_status = status
    emu.faults.http_status_count = 1
    emu.faults.retry_after_s = 0.05
    c = client(emu)
    with pytest.raises(errors.SDKError) as err:
        await c.models.list_async()
    assert err.value.status_code == status
    if status == 429:
        assert err.value.headers["retry-after"] == "0.05"
        assert err.value.headers["retry-after-ms"] == "50"
    assert (await c.models.list_async()).data  # one-shot count: the next call passes
    assert [e.status for e in emu.log.of("http", "/v1/models")] == [status, 200]


@pytest.mark.asyncio
async def test_429_then_200_with_sdk_retries_honours_retry_after(emu: MistralEmulator) -> None:
    from mistralai.client.utils import BackoffStrategy, RetryConfig

    emu.faults.http_status = 429
    emu.faults.http_status_count = 2
    emu.faults.retry_after_s = 0.1
    retry = RetryConfig("backoff", BackoffStrategy(5000, 5000, 1.0, 10_000), False)
    c = client(emu, retry_config=retry)
    t0 = time.monotonic()
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        kinds = [type(ev.data).__name__ async for ev in stream]
    assert kinds[-1] == "ResponseDoneEvent"
    assert [e.status for e in emu.log.of("http", "/v1/conversations")] == [429, 429, 200]
    assert 0.18 <= time.monotonic() - t0 < 2.0  # slept retry-after, not the 5 s backoff


@pytest.mark.asyncio
async def test_ws_handshake_rejected_401(emu: MistralEmulator) -> None:
    from mistralai.extra.exceptions import RealtimeSpeechException, RealtimeTranscriptionException

    emu.faults.ws_reject_status = 401
    emu.faults.ws_reject_count = 2
    c = client(emu)
    with pytest.raises(RealtimeTranscriptionException, match="HTTP 401"):
        await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    with pytest.raises(RealtimeSpeechException, match="HTTP 401"):
        await c.audio.realtime_speech.connect(model=TTS_MODEL)
    conn = await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    await conn.close()
    assert [e.status for e in emu.log.of("ws_reject")] == [401, 401]


@pytest.mark.asyncio
async def test_ws_drop_after_n_events(emu: MistralEmulator) -> None:
    from mistralai.extra.exceptions import RealtimeSpeechException
    from websockets.exceptions import ConnectionClosedError

    c = client(emu)
    emu.faults.drop_after_events = 3  # session.created, session.updated, one more
    conn = await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    await feed(conn, pcm16("Hello, how are you doing today?"))
    await conn.flush_audio()
    got: list[str] = []
    with pytest.raises(ConnectionClosedError) as err:
        async for ev in conn:
            got.append(type(ev).__name__)
    assert len(got) == 3 and err.value.rcvd is not None and err.value.rcvd.code == 1011
    assert emu.faults.drop_after_events is None  # one-shot

    emu.faults.drop_after_events = 2
    tts = await c.audio.realtime_speech.connect(model=TTS_MODEL, voice_id="gb_jane_neutral")
    await tts.flush(text="Hello there, how are you?")
    with pytest.raises(RealtimeSpeechException) as serr:
        async for _ in tts:
            pass
    assert serr.value.code == 1011


@pytest.mark.asyncio
async def test_sse_drop_mid_stream(emu: MistralEmulator) -> None:
    import httpx2

    emu.faults.drop_after_events = 3
    emu.fault_scope = "/v1/conversations"
    c = client(emu)
    await c.models.list_async()  # out of scope: untouched
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    got: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        async with stream:
            async for ev in stream:
                got.append(type(ev.data).__name__)
    assert got == ["ResponseStartedEvent", "MessageOutputEvent", "MessageOutputEvent"]
    assert emu.log.of("sse_drop")

    # a client abandoning a stream (barge-in) is logged, and the server carries on
    emu.timing.token_interval_s = 0.02
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        async for ev in stream:
            if isinstance(ev.data, models.MessageOutputEvent):
                break
    closed = await emu.wait_for("sse_client_closed", "/v1/conversations", timeout=2)
    assert closed.conversation_id is not None
    assert (await c.models.list_async()).data


@pytest.mark.asyncio
async def test_malformed_and_unknown_frames(emu: MistralEmulator) -> None:
    from mistralai.client.errors import ResponseValidationError
    from mistralai.extra.realtime import UnknownRealtimeEvent

    c = client(emu)
    # WebSocket: a non-JSON frame and an unknown type, each after 1 event
    emu.faults.malformed_after_events = 1
    emu.faults.unknown_after_events = 1
    conn = await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    await conn.end_audio()
    events = [ev async for ev in conn]
    unknown = [e for e in events if isinstance(e, UnknownRealtimeEvent)]
    assert len(unknown) == 2
    assert unknown[0].type is None and unknown[0].error and "invalid JSON" in unknown[0].error
    assert unknown[1].type == "emulator.unknown_event"
    assert isinstance(events[-1], models.TranscriptionStreamDone)

    # SSE: a known type with a broken payload, then an unknown type → Unknown… objects
    emu.faults.malformed_after_events = 2
    emu.faults.unknown_after_events = 2
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        data = [ev.data async for ev in stream]
    odd = [d for d in data if isinstance(d, models.UnknownConversationEventsData)]
    assert len(odd) == 2 and odd[1].raw["type"] == "emulator.unknown_event"
    assert isinstance(data[-1], models.ResponseDoneEvent)

    # SSE with invalid JSON: the SDK raises from the iterator
    emu.sse_malformed_json = True
    emu.faults.malformed_after_events = 1
    speech = await c.audio.speech.complete_async(
        input="Hi there.", model=TTS_MODEL, voice_id="gb_jane_neutral", response_format="pcm",
        stream=True,
    )  # fmt: skip
    with pytest.raises(ResponseValidationError):
        async with speech:
            async for _ in speech:
                pass


@pytest.mark.asyncio
async def test_in_band_conversation_error(emu: MistralEmulator) -> None:
    emu.conversation_error = "Moderation blocked the request"
    c = client(emu)
    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        data = [ev.data async for ev in stream]
    assert isinstance(data[0], models.ResponseStartedEvent)
    assert isinstance(data[-1], models.ResponseErrorEvent) and data[-1].code == 3000
    assert data[-1].message == "Moderation blocked the request"
    assert emu.conversation_error is None  # one-shot


@pytest.mark.asyncio
async def test_stall_times_out_rest_and_ws(emu: MistralEmulator) -> None:
    import httpx2
    from mistralai.extra.exceptions import RealtimeTranscriptionException

    emu.faults.stall_s = 0.4
    c = client(emu, timeout_ms=150)
    with pytest.raises(httpx2.ReadTimeout):
        await c.models.list_async()
    with pytest.raises(RealtimeTranscriptionException, match="Timeout waiting for session"):
        await c.audio.realtime.connect(model=STT_MODEL, audio_format=PCM16K)
    emu.faults.stall_s = 0.0
    await asyncio.sleep(0.3)  # let the stalled handlers finish before teardown
    assert (await client(emu).models.list_async()).data


# -- the checker itself, the log, the CLI --------------------------------------------------------


def test_strict_checker_flags_drift() -> None:
    from voicetui.testing.emulators.strict_mistral import StrictChecker

    checker = StrictChecker()
    ok = {"type": "message.output.delta", "id": "m", "content": "hi"}
    assert checker.problems("sse:conversation", "message.output.delta", json.dumps(ok)) == []
    extra = ok | {"delta": "hi"}
    assert "not a field" in checker.problems("sse:conversation", ok["type"], json.dumps(extra))[0]
    missing = {"type": "message.output.delta", "content": "hi"}
    assert checker.problems("sse:conversation", ok["type"], json.dumps(missing))
    coerced = {"type": "turn.end", "time_s": "1.0", "end_reason": "threshold"}
    assert checker.problems("ws:stt", "turn.end", json.dumps(coerced))  # lax would accept
    bad_enum = {"type": "turn.end", "time_s": 1.0, "end_reason": "bored"}
    assert checker.problems("ws:stt", "turn.end", json.dumps(bad_enum))
    assert checker.problems("ws:stt", "transcription.nope", "{}")
    nested = {"session": {"request_id": "r", "model": "m", "audio_format": {
        "encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}}}  # fmt: skip
    assert "channels" in checker.problems("ws:stt", "session.created", json.dumps(nested))[0]


@pytest.mark.asyncio
async def test_log_orders_overlapping_streams(emu: MistralEmulator) -> None:
    """The pattern the cascade tests use: TTS starts while the agent stream still runs."""
    emu.timing.token_interval_s = 0.03
    emu.script = Script(turns=[Turn(reply="First clause, then a few more words to stream.")])
    c = client(emu)
    speech_task: asyncio.Task[Any] | None = None

    async def speak(text: str) -> None:
        st = await c.audio.speech.complete_async(
            input=text,
            model=TTS_MODEL,
            voice_id="gb_jane_neutral",
            response_format="pcm",
            stream=True,
        )
        async with st:
            async for _ in st:
                pass

    stream = await c.beta.conversations.start_stream_async(model="mistral-small-latest", inputs="x")
    async with stream:
        async for ev in stream:
            if isinstance(ev.data, models.MessageOutputEvent) and speech_task is None:
                speech_task = asyncio.create_task(speak("First clause,"))
    assert speech_task is not None
    await speech_task
    tts = emu.log.of("http", "/v1/audio/speech")[0]
    llm_end = await emu.wait_for("http_end", "/v1/conversations")
    llm_done = await emu.wait_for("sse_out", "conversation.response.done")
    assert tts.at < llm_done.at <= llm_end.at


@pytest.mark.asyncio
async def test_log_and_wait_for(emu: MistralEmulator) -> None:
    c = client(emu)
    waiter = asyncio.create_task(emu.wait_for("http_end", "/v1/models", timeout=2))
    await c.models.list_async()
    entry = await waiter
    assert entry.status == 200
    with pytest.raises(TimeoutError):
        await emu.wait_for("ws_open", timeout=0.05)


def test_thread_fixture_and_cli(mistral_emulator_thread: MistralEmulator) -> None:
    import os
    import subprocess
    import sys

    from voicetui.testing.emulators.common import free_port

    with Mistral(api_key=KEY, server_url=mistral_emulator_thread.base_url, timeout_ms=3000) as c:
        assert c.models.list().data
    assert mistral_emulator_thread.wait_for_sync("http_end", "/v1/models").status == 200

    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicetui.testing.emulators.mistral", "--port", str(port),
         "--reply", "From the command line.", "--pace", "0", "--strict"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        started = time.monotonic() - t0
        assert f"127.0.0.1:{port}" in line
        with Mistral(api_key=KEY, server_url=f"http://127.0.0.1:{port}", timeout_ms=3000) as cli:
            reply = cli.beta.conversations.start(model="mistral-small-latest", inputs="hi")
        content = reply.outputs[-1].content
        assert isinstance(content, list) and isinstance(content[0], models.TextChunk)
        assert content[0].text == "From the command line."
        assert started < 3.0  # interpreter start-up included; in-process start is ~10 ms
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
        assert "STRICT" not in err
