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
