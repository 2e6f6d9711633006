"""Fidelity tests: the real ``openai`` SDK against the OpenAI Realtime emulator.

Every emulator here runs with ``strict=True``: each server frame is validated strictly into
the SDK's typed model for its type before it is sent, and each test asserts no violations.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from openai import AsyncOpenAI

from voicetui.testing.emulators.common import Turn, speech_like_pcm
from voicetui.testing.emulators.openai import BYTES_PER_MS, OpenAIEmulator

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

MODEL = "gpt-realtime"


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    """A strict emulator in the test's loop; fails the test on any strict violation."""
    emulator = OpenAIEmulator(strict=True)
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert not emulator.violations, "\n".join(map(str, emulator.violations))
    assert not emulator.internal_errors, emulator.internal_errors
    assert not emulator.client_violations, "\n".join(map(str, emulator.client_violations))


def client_for(emu: OpenAIEmulator, **kw: Any) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", base_url=emu.base_url + "/v1", **kw)


def pcm16(text: str) -> bytes:
    return (np.clip(speech_like_pcm(text), -1, 1) * 32767).astype("<i2").tobytes()


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


async def append_all(conn: Any, pcm: bytes, chunk_ms: int = 40) -> None:
    step = chunk_ms * BYTES_PER_MS
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())


async def collect_until(conn: Any, last: str, limit_s: float = 10.0) -> list[Any]:
    """Events up to and including the first of type ``last``."""
    events: list[Any] = []

    async def run() -> None:
        async for event in conn:
            events.append(event)
            if event.type == last:
                return

    await asyncio.wait_for(run(), limit_s)
    return events


def types_of(events: list[Any]) -> list[str]:
    return [e.type for e in events]


PTT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "instructions": "Be brief.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "turn_detection": None,
            "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "noise_reduction": {"type": "near_field"},
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
    },
}

RESPONSE_ORDER = [
    "response.created",
    "rate_limits.updated",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]
CLOSE_ORDER = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


async def test_models_list_and_retrieve(emu: OpenAIEmulator) -> None:
    client = client_for(emu)
    models = await client.models.list()
    ids = [m.id for m in models.data]
    assert "gpt-realtime" in ids and "gpt-4o-transcribe-diarize" in ids
    model = await client.models.retrieve("gpt-realtime")
    assert model.id == "gpt-realtime" and model.object == "model"
    assert model._request_id and model._request_id.startswith("req_")
    http = emu.log.of("http")
    assert [(e.method, e.path, e.status) for e in http] == [
        ("GET", "/v1/models", 200),
        ("GET", "/v1/models/gpt-realtime", 200),
    ]


async def test_push_to_talk_turn(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(user_text="What time is it?", reply="It is noon. Anything else?")]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        assert created.session.model_extra and created.session.model_extra["id"].startswith("sess_")
        await conn.session.update(session=PTT_SESSION)
        updated = await conn.recv()
        assert updated.type == "session.updated"
        assert updated.session.audio.input.turn_detection is None
        assert updated.session.audio.input.transcription.model == "gpt-4o-transcribe"
        assert updated.session.instructions == "Be brief."

        user_pcm = pcm16("what time is it")
        await append_all(conn, user_pcm, chunk_ms=20)
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events = await collect_until(conn, "response.done")

    names = types_of(events)
    assert names[:3] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    completed = next(
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    )
    assert completed.transcript == "What time is it?"
    assert completed.usage.type == "tokens" and completed.usage.total_tokens > 0
    first_resp = names.index("response.created")
    assert names[first_resp : first_resp + 5] == RESPONSE_ORDER
    assert names[-6:] == CLOSE_ORDER
    text = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert text == "It is noon. Anything else?"
    audio = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    assert len(audio) == len(pcm16("It is noon. Anything else?"))
    # transcript and audio deltas are interleaved, not one block after the other
    deltas = [n for n in names if n.startswith("response.output_audio")]
    assert deltas.index("response.output_audio.delta") < deltas.index(
        "response.output_audio_transcript.delta", 2
    )
    done = events[-1]
    assert done.response.status == "completed"
    assert done.response.usage.total_tokens > 0
    assert done.response.usage.output_token_details.audio_tokens > 0
    assert done.response.output[0].content[0].transcript == text
    # the request log: event types and audio bytes, never the key
    assert emu.log.audio_bytes_received() == len(user_pcm)
    session = emu.sessions[-1]
    assert session.user_transcripts == ["What time is it?"]
    assert session.assistant_transcripts == [text]
    assert [i["role"] for i in session.items.values()] == ["user", "assistant"]
    assert "sk-test" not in repr(emu.log.entries)


VAD_SESSION: dict[str, Any] = {
    "type": "realtime",
    "audio": {
        "input": {
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 400,
                "create_response": True,
                "interrupt_response": True,
            },
            "transcription": {"model": "gpt-4o-transcribe"},
        },
    },
}


async def open_session(conn: Any, session: dict[str, Any]) -> Any:
    assert (await conn.recv()).type == "session.created"
    await conn.session.update(session=session)
    updated = await conn.recv()
    assert updated.type == "session.updated"
    return updated


async def test_server_vad_turn_from_audio_energy(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(user_text="Hello there.", reply="Hi! How can I help?")]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        updated = await open_session(conn, VAD_SESSION)
        td = updated.session.audio.input.turn_detection
        assert td.type == "server_vad" and td.silence_duration_ms == 400
        lead, speech = silence(500), pcm16("hello there")
        # quiet noise below the threshold must not trigger the VAD
        noise = (np.random.default_rng(1).normal(0, 30, 12_000)).astype("<i2").tobytes()
        await append_all(conn, noise + lead + speech + silence(600), chunk_ms=30)
        events = await collect_until(conn, "response.done")

    names = types_of(events)
    assert names[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    started, stopped = events[0], events[1]
    onset_ms = (len(noise) + len(lead)) // BYTES_PER_MS
    # audio_start_ms includes the 300 ms prefix padding; the detector needs ~20 ms of energy
    assert onset_ms - 300 - 5 <= started.audio_start_ms <= onset_ms - 300 + 40
    speech_end_ms = onset_ms + len(speech) // BYTES_PER_MS
    # audio_end_ms includes the silence duration (400 ms)
    assert speech_end_ms + 300 <= stopped.audio_end_ms <= speech_end_ms + 450
    assert started.item_id == stopped.item_id == events[2].item_id
    assert "response.created" in names and events[-1].response.status == "completed"
    assert emu.sessions[-1].user_transcripts == ["Hello there."]


async def test_vad_silence_only_never_fires(emu: OpenAIEmulator) -> None:
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, VAD_SESSION)
        await append_all(conn, silence(1500))
        await conn.input_audio_buffer.clear()
        events = await collect_until(conn, "input_audio_buffer.cleared")
    assert types_of(events) == ["input_audio_buffer.cleared"]


async def test_barge_in_then_truncate(emu: OpenAIEmulator) -> None:
    long_reply = (
        "Sure, here is a rather long answer that keeps going for several seconds "
        "so that there is plenty of time to interrupt it while it is still talking."
    )
    emu.script.turns = [
        Turn(user_text="Tell me a story.", reply=long_reply),
        Turn(user_text="Stop.", reply="Okay."),
    ]
    emu.timing.audio_pace = 8.0  # 8x real time keeps the test short
    emu.timing.chunk_ms = 100
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, VAD_SESSION)
        await append_all(conn, silence(300) + pcm16("tell me a story") + silence(500))
        events: list[Any] = []
        deltas = 0
        async for event in conn:
            events.append(event)
            if event.type == "response.output_audio.delta":
                deltas += 1
                if deltas == 3:  # the user talks over the assistant
                    await append_all(conn, pcm16("stop") + silence(500))
            if event.type == "response.done":
                break
        first_done = events[-1]
        assert first_done.response.status == "cancelled"
        assert first_done.response.status_details.reason == "turn_detected"
        item = first_done.response.output[0]
        assert item.status == "incomplete"
        names = types_of(events)
        barge = names.index("input_audio_buffer.speech_started", 1)
        assert names[barge + 1 :] == CLOSE_ORDER
        # no audio delta after speech_started: the emulator stops before announcing it
        played_ms = 150
        await conn.conversation.item.truncate(
            item_id=item.id, content_index=0, audio_end_ms=played_ms
        )
        rest = await collect_until(conn, "response.done")
    rest_names = types_of(rest)
    assert "conversation.item.truncated" in rest_names
    truncated = rest[rest_names.index("conversation.item.truncated")]
    assert truncated.item_id == item.id and truncated.audio_end_ms == played_ms
    assert rest[-1].response.status == "completed"
    session = emu.sessions[-1]
    heard = session.items[item.id]["content"][0]["transcript"]
    assert heard == "Sure,"  # only the words whose audio began before 150 ms
    assert session.responses[0].reason == "turn_detected"
    await emu.wait_for("ws_in", "conversation.item.truncate", timeout=1)


async def test_truncate_beyond_generated_audio_is_an_error(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="Short.")]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await append_all(conn, pcm16("hi there"))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events = await collect_until(conn, "response.done")
        item_id = events[-1].response.output[0].id
        generated = emu.sessions[-1].responses[0].audio_ms
        await conn.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_trunc_1",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": int(generated) + 500,
            }
        )
        error = (await collect_until(conn, "error"))[-1]
        assert error.error.event_id == "evt_trunc_1"
        assert error.error.type == "invalid_request_error"
        assert error.error.param == "audio_end_ms"
        # a user item cannot be truncated either
        user_id = events[0].item_id
        await conn.conversation.item.truncate(item_id=user_id, content_index=0, audio_end_ms=0)
        assert (await collect_until(conn, "error"))[-1].error.code == "invalid_value"


async def test_client_cancel_and_response_errors(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="This answer will be cut short by the client, for sure.")]
    emu.timing.audio_pace = 8.0
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await append_all(conn, pcm16("hi there"))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events: list[Any] = []
        async for event in conn:
            events.append(event)
            if event.type == "response.output_audio.delta":
                break
        # a second response while one is active is refused
        await conn.response.create(event_id="evt_second")
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "conversation_already_has_active_response"
        assert err.error.event_id == "evt_second"
        await conn.response.cancel(event_id="evt_cancel")
        rest = await collect_until(conn, "response.done")
        done = rest[-1]
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        assert types_of(rest)[-6:] == CLOSE_ORDER
        await conn.response.cancel(event_id="evt_cancel_2")
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "response_cancel_not_active"
        assert err.error.event_id == "evt_cancel_2"


async def test_input_buffer_errors_and_unknown_events(emu: OpenAIEmulator) -> None:
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await append_all(conn, pcm16("hi")[: 50 * BYTES_PER_MS])  # 50 ms < 100 ms
        await conn.input_audio_buffer.commit()
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "input_audio_buffer_commit_empty"
        await conn.input_audio_buffer.clear()
        assert (await collect_until(conn, "input_audio_buffer.cleared"))[-1].event_id
        await conn.output_audio_buffer.clear()
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "invalid_value" and "WebRTC" in err.error.message
        await conn.send_raw('{"type": "bogus.event", "event_id": "evt_bogus"}')
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "invalid_value" and err.error.event_id == "evt_bogus"
    emu.client_violations.clear()  # bogus.event was deliberately invalid


async def test_conversation_items_create_retrieve_delete(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="You said hello.")]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        # the engine reseeds a reconnected session with text items
        for role, ctype, text in (
            ("system", "input_text", "Earlier: the user asked about trains."),
            ("user", "input_text", "hello"),
            ("assistant", "output_text", "Hi, what can I do?"),
        ):
            await conn.conversation.item.create(
                item={"type": "message", "role": role, "content": [{"type": ctype, "text": text}]}
            )
            added, done = await conn.recv(), await conn.recv()
            assert (added.type, done.type) == ("conversation.item.added", "conversation.item.done")
            assert added.item.role == role and done.item.status == "completed"
        ids = list(emu.sessions[-1].items)
        # insert at the very start, then after a given item; an unknown anchor is an error
        await conn.conversation.item.create(
            previous_item_id="root",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "0"}],
            },
        )
        first = (await collect_until(conn, "conversation.item.done"))[-1]
        assert first.previous_item_id is None
        await conn.conversation.item.create(
            previous_item_id=ids[0],
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "1"}],
            },
        )
        second = (await collect_until(conn, "conversation.item.done"))[-1]
        assert second.previous_item_id == ids[0]
        assert list(emu.sessions[-1].items) == [first.item.id, ids[0], second.item.id, *ids[1:]]
        await conn.conversation.item.create(
            previous_item_id="item_missing",
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x"}],
            },
        )
        assert (await collect_until(conn, "error"))[-1].error.param == "previous_item_id"
        for extra in (first.item.id, second.item.id):
            await conn.conversation.item.delete(item_id=extra)
            assert (await conn.recv()).type == "conversation.item.deleted"
        await conn.conversation.item.retrieve(item_id=ids[1])
        got = (await collect_until(conn, "conversation.item.retrieved"))[-1]
        assert got.item.content[0].text == "hello"
        await conn.conversation.item.delete(item_id=ids[0])
        deleted = (await collect_until(conn, "conversation.item.deleted"))[-1]
        assert deleted.item_id == ids[0]
        await conn.response.create()
        done = (await collect_until(conn, "response.done"))[-1]
        assert done.response.status == "completed"
        await conn.conversation.item.delete(item_id="item_nope")
        assert (await collect_until(conn, "error"))[-1].error.param == "item_id"
    assert list(emu.sessions[-1].items)[:2] == ids[1:]


async def test_idle_timeout_triggers_a_response(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="Are you still there?")]
    session = {
        "type": "realtime",
        "audio": {
            "input": {
                "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000},
            }
        },
    }
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        updated = await open_session(conn, session)
        td = updated.session.audio.input.turn_detection
        # omitted fields take the server_vad defaults
        assert (td.threshold, td.silence_duration_ms, td.idle_timeout_ms) == (0.5, 500, 5000)
        await append_all(conn, silence(5200), chunk_ms=100)
        events = await collect_until(conn, "response.done")
    names = types_of(events)
    assert names[:4] == [
        "input_audio_buffer.timeout_triggered",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    timeout = events[0]
    assert timeout.audio_start_ms == 0 and 5000 <= timeout.audio_end_ms <= 5100
    assert events[-1].response.status == "completed"


async def test_semantic_vad_replaces_turn_detection_wholesale(emu: OpenAIEmulator) -> None:
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, VAD_SESSION)
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}
                },
            }
        )
        updated = await conn.recv()
        td = updated.session.audio.input.turn_detection
        assert td.type == "semantic_vad" and td.eagerness == "high"
        assert td.model_extra == {}  # no stale server_vad keys leak in
        # the rest of the session survives a partial update
        assert updated.session.audio.input.transcription.model == "gpt-4o-transcribe"
        await append_all(conn, pcm16("hello") + silence(400))
        events = await collect_until(conn, "response.done")
    assert types_of(events)[:2] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
    ]


async def test_text_only_response(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="Plain text answer.")]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, {"type": "realtime", "output_modalities": ["text"]})
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "q"}],
            }
        )
        await conn.response.create()
        events = await collect_until(conn, "response.done")
    names = types_of(events)
    assert "response.output_audio.delta" not in names
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Plain text answer."
    )
    assert events[-1].response.output[0].content[0].type == "output_text"
    assert events[-1].response.output[0].content[0].text == "Plain text answer."


async def test_session_update_validation_and_no_model(emu: OpenAIEmulator) -> None:
    async with client_for(emu).realtime.connect() as conn:  # no ?model= at all
        created = await conn.recv()
        assert created.session.model == "gpt-realtime"
        # the SDK sends a session without "type" as written; the server refuses it
        await conn.session.update(session={"instructions": "x"}, event_id="evt_upd")  # type: ignore[typeddict-item]
        err = (await collect_until(conn, "error"))[-1]
        assert err.error.code == "missing_required_parameter"
        assert err.error.param == "session.type" and err.error.event_id == "evt_upd"
    assert emu.log.of("ws_open")[0].body == {"query": {}}
    emu.client_violations.clear()  # the missing type was deliberate


async def test_timing_knobs_pace_the_stream(emu: OpenAIEmulator) -> None:
    reply = "one two three four five six seven eight"
    emu.script.turns = [Turn(reply=reply)]
    emu.timing.first_token_delay_s = 0.05
    emu.timing.token_interval_s = 0.02
    emu.timing.first_audio_delay_s = 0.12
    emu.timing.audio_pace = 6.0
    emu.timing.chunk_ms = 50
    audio_s = len(pcm16(reply)) / BYTES_PER_MS / 1000
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await append_all(conn, pcm16("go"))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        stamps: dict[str, list[float]] = {}
        loop = asyncio.get_running_loop()
        async for event in conn:
            stamps.setdefault(event.type, []).append(loop.time())
            if event.type == "response.done":
                break
    t0 = stamps["response.created"][0]
    first_token = stamps["response.output_audio_transcript.delta"][0] - t0
    first_audio = stamps["response.output_audio.delta"][0] - t0
    audio_span = (
        stamps["response.output_audio.delta"][-1] - stamps["response.output_audio.delta"][0]
    )
    assert 0.05 <= first_token < 0.05 + 0.15
    assert 0.12 <= first_audio < 0.12 + 0.15
    # paced at 6x real time: the last chunk goes out one chunk before the end of the clip
    expected = (audio_s - 0.05) / 6.0
    assert expected * 0.95 <= audio_span <= expected + 0.2
    tokens = stamps["response.output_audio_transcript.delta"]
    assert len(tokens) == 8 and tokens[-1] - tokens[0] >= 7 * 0.02 * 0.95


async def test_multi_turn_item_chain(emu: OpenAIEmulator) -> None:
    emu.script.turns = [
        Turn(user_text="one", reply="First."),
        Turn(user_text="two", reply="Second."),
    ]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        all_events: list[Any] = []
        for word in ("one", "two"):
            await append_all(conn, pcm16(word) + silence(100))
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            all_events += await collect_until(conn, "response.done")
    committed = [e for e in all_events if e.type == "input_audio_buffer.committed"]
    done = [e for e in all_events if e.type == "response.done"]
    assert committed[0].previous_item_id is None
    # the second user item follows the first assistant item
    assert committed[1].previous_item_id == done[0].response.output[0].id
    assert [d.response.output[0].content[0].transcript for d in done] == ["First.", "Second."]
    assert emu.sessions[-1].user_transcripts == ["one", "two"]
    assert len(emu.sessions[-1].items) == 4


async def test_session_expiry_sends_error_then_closes(emu: OpenAIEmulator) -> None:
    emu.session_max_s = 0.3
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        created = await conn.recv()
        expires_at = created.session.model_extra["expires_at"]
        assert isinstance(expires_at, int)
        seen = [event async for event in conn]  # close 1000 ends iteration quietly
    assert [e.type for e in seen] == ["error"]
    assert seen[0].error.code == "session_expired"
    assert emu.sessions[-1].close_code == 1000


async def test_switching_from_push_to_talk_to_vad_keeps_session_offsets(
    emu: OpenAIEmulator,
) -> None:
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await append_all(conn, silence(1000))  # written to the buffer, then dropped
        await conn.input_audio_buffer.clear()
        assert (await conn.recv()).type == "input_audio_buffer.cleared"
        await conn.session.update(session=VAD_SESSION)
        assert (await conn.recv()).type == "session.updated"
        await append_all(conn, silence(500) + pcm16("hello again") + silence(500))
        events = await collect_until(conn, "input_audio_buffer.speech_stopped")
    started = events[0]
    assert started.type == "input_audio_buffer.speech_started"
    # offsets count all audio written this session: 1000 + 500 ms, minus 300 ms padding
    assert 1200 - 5 <= started.audio_start_ms <= 1200 + 40


async def test_max_output_tokens_ends_incomplete(emu: OpenAIEmulator) -> None:
    emu.script.turns = [
        Turn(reply="A fairly long reply that will not fit in the token cap at all.")
    ]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        await open_session(conn, PTT_SESSION)
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "q"}],
            }
        )
        await conn.response.create(response={"max_output_tokens": 20})
        events = await collect_until(conn, "response.done")
    done = events[-1]
    assert done.response.status == "incomplete"
    assert done.response.status_details.type == "incomplete"
    assert done.response.status_details.reason == "max_output_tokens"
    assert done.response.max_output_tokens == 20
    assert done.response.output[0].status == "incomplete"
    assert types_of(events)[-6:] == CLOSE_ORDER
    assert 0 < done.response.usage.output_tokens <= 20 + 2
