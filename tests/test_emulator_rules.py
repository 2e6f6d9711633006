"""The emulators refuse what the real services refuse, seen from the real SDKs (issue 11).

One test per rule; each names the documented behaviour it mirrors (see the emulator
comments for the sources)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
import websockets
from mistralai.client import Mistral, errors, models
from mistralai.extra.exceptions import RealtimeTranscriptionWSError

from voicetui.testing.emulators.mistral import (
    LLM_MODEL,
    REALTIME_MODEL,
    REALTIME_MODEL_NO_TURNS,
    TTS_MODEL,
    MistralEmulator,
)
from voicetui.testing.emulators.openai import OpenAIEmulator

pytestmark = pytest.mark.asyncio
KEY = "sk-test-rules-1234"
PCM = models.AudioFormat(encoding="pcm_s16le", sample_rate=16000)


@pytest_asyncio.fixture
async def mistral(mistral_emulator: MistralEmulator) -> AsyncIterator[Mistral]:
    async with Mistral(api_key=KEY, server_url=mistral_emulator.base_url, timeout_ms=5000) as sdk:
        yield sdk


@pytest_asyncio.fixture
async def oa() -> AsyncIterator[tuple[OpenAIEmulator, openai.AsyncOpenAI]]:
    emu = OpenAIEmulator(strict=True)
    await emu.start()
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=emu.base_url + "/v1", max_retries=0)
    yield emu, client
    await client.close()
    await emu.stop()
    assert not emu.violations and not emu.internal_errors


async def _first_error(conn: Any) -> models.RealtimeTranscriptionError:
    async for event in conn:
        if isinstance(event, models.RealtimeTranscriptionError):
            return event
        assert not isinstance(event, models.TranscriptionStreamDone)
    raise AssertionError("no error event")


# ----------------------------------------------------------------------------- Mistral


async def test_mistral_unknown_realtime_model_is_refused_at_the_handshake(
    mistral: Mistral,
) -> None:
    with pytest.raises(RealtimeTranscriptionWSError, match="Invalid model: voxtral-nope"):
        await mistral.audio.realtime.connect(model="voxtral-nope", audio_format=PCM)


async def test_mistral_unknown_model_over_rest_is_a_400_invalid_model(mistral: Mistral) -> None:
    with pytest.raises(errors.SDKError) as info:
        await mistral.beta.agents.create_async(model="mistral-nope-latest", name="x")
    assert info.value.status_code == 400
    body = json.loads(info.value.body)
    assert (
        body["type"] == "invalid_model" and body["message"] == "Invalid model: mistral-nope-latest"
    )
    # a known one is fine
    agent = await mistral.beta.agents.create_async(model=LLM_MODEL, name="ok")
    assert agent.model == LLM_MODEL


async def test_mistral_turn_detection_needs_a_model_that_has_it(mistral: Mistral) -> None:
    conn = await mistral.audio.realtime.connect(
        model=REALTIME_MODEL_NO_TURNS, audio_format=PCM, turn_detection={"min_silence_ms": 500}
    )
    try:
        error = await _first_error(conn)
    finally:
        await conn.close()
    assert error.error.code == 422
    assert "does not support turn_detection" in str(error.error.message)
    # the model that has it accepts the same session
    ok = await mistral.audio.realtime.connect(
        model=REALTIME_MODEL, audio_format=PCM, turn_detection={"min_silence_ms": 500}
    )
    try:
        async for event in ok:
            assert not isinstance(event, models.RealtimeTranscriptionError)
            if isinstance(event, models.RealtimeTranscriptionSessionUpdated):
                assert event.session.turn_detection is not None
                break
    finally:
        await ok.close()


async def test_mistral_refuses_diarization_with_turn_detection(mistral: Mistral) -> None:
    conn = await mistral.audio.realtime.connect(
        model=REALTIME_MODEL, audio_format=PCM, turn_detection={}, diarize=True
    )
    try:
        error = await _first_error(conn)
    finally:
        await conn.close()
    assert error.error.message == "Diarization is not compatible with turn detection"


async def test_mistral_session_fields_are_fixed_once_audio_started(mistral: Mistral) -> None:
    conn = await mistral.audio.realtime.connect(model=REALTIME_MODEL, audio_format=PCM)
    try:
        await conn.send_audio(b"\x00\x00" * 1600)
        await conn.update_session(diarize=True)
        error = await _first_error(conn)
    finally:
        await conn.close()
    assert error.error.message == "Session fields cannot be changed after audio has started"


async def test_mistral_speech_needs_a_voice_and_a_known_one(mistral: Mistral) -> None:
    with pytest.raises(errors.HTTPValidationError):  # 422: no voice and no reference audio
        await mistral.audio.speech.complete_async(input="Hi.", model=TTS_MODEL)
    with pytest.raises(errors.SDKError) as info:
        await mistral.audio.speech.complete_async(input="Hi.", model=TTS_MODEL, voice_id="nobody")
    assert info.value.status_code == 404
    ok = await mistral.audio.speech.complete_async(
        input="Hi.", model=TTS_MODEL, voice_id="voice_478", response_format="wav"
    )
    assert ok.audio_data


async def test_mistral_models_list_says_which_realtime_model_detects_turns(
    mistral: Mistral,
) -> None:
    listing = await mistral.models.list_async()
    caps = {
        m.id: m.audio_transcription_capabilities  # type: ignore[union-attr]
        for m in listing.data or []
        if getattr(m, "audio_transcription_capabilities", None) is not None
    }
    assert caps[REALTIME_MODEL].turn_detection is True
    assert caps[REALTIME_MODEL_NO_TURNS].turn_detection is False


# ----------------------------------------------------------------------------- OpenAI


async def test_openai_models_list_carries_shutdown_dates(
    oa: tuple[OpenAIEmulator, openai.AsyncOpenAI],
) -> None:
    _, client = oa
    page = await client.models.list()
    by_id = {m.id: m for m in page.data}
    assert by_id["gpt-realtime"].shutdown_date == "2027-01-20"
    assert by_id["gpt-realtime-2.1"].shutdown_date is None
    assert "gpt-4o-realtime-preview" not in by_id  # shut down: gone from the account
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-4o-realtime-preview")
    assert info.value.code == "model_not_found"


async def test_openai_realtime_with_a_retired_model_gets_the_error_and_close(
    oa: tuple[OpenAIEmulator, openai.AsyncOpenAI],
) -> None:
    emu, client = oa
    async with client.realtime.connect(model="gpt-4o-realtime-preview") as conn:
        event = await conn.recv()
        assert event.type == "error"
        assert event.error.code == "model_not_found"
        assert "gpt-4o-realtime-preview" in event.error.message
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            await conn.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert emu.sessions[0].close_code == 4000


async def test_openai_realtime_refuses_an_unknown_voice(
    oa: tuple[OpenAIEmulator, openai.AsyncOpenAI],
) -> None:
    _, client = oa
    async with client.realtime.connect(model="gpt-realtime-2.1") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "nobody"}}}
        )
        event = await conn.recv()
        assert event.type == "error"
        assert event.error.code == "invalid_value"
        assert event.error.param == "session.audio.output.voice"
        await conn.session.update(
            session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}}
        )
        updated = await conn.recv()
        assert updated.type == "session.updated"
