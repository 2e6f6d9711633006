"""Every fault knob of the OpenAI emulator, seen through the real ``openai`` SDK: the
exception class, status and close code a client gets are what the hosted service would
produce (wire reference §1.6, §6.2, §6.3)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI, OpenAI
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from voicetui.testing.emulators.common import Turn
from voicetui.testing.emulators.openai import BYTES_PER_MS, OpenAIEmulator
from voicetui.testing.emulators.strict_openai import (
    validate_client_event,
    validate_server_event,
)

pytestmark = [pytest.mark.timeout(30)]

MODEL = "gpt-realtime"


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    emulator = OpenAIEmulator(strict=True)
    await emulator.start()
    yield emulator
    await emulator.stop()
    assert not emulator.violations, "\n".join(map(str, emulator.violations))
    assert not emulator.internal_errors, emulator.internal_errors


def client_for(emu: OpenAIEmulator, **kw: Any) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", base_url=emu.base_url + "/v1", **kw)


# -- HTTP status faults ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_http_401_is_authentication_error(emu: OpenAIEmulator) -> None:
    emu.faults.http_status, emu.faults.http_status_count = 401, 1
    with pytest.raises(openai.AuthenticationError) as info:
        await client_for(emu, max_retries=0).models.retrieve(MODEL)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert info.value.request_id and info.value.request_id.startswith("req_")
    # the count is spent: the next call succeeds
    assert (await client_for(emu).models.retrieve(MODEL)).id == MODEL


@pytest.mark.asyncio
async def test_http_429_retry_after_then_success(emu: OpenAIEmulator) -> None:
    emu.faults.http_status, emu.faults.http_status_count = 429, 2
    emu.faults.retry_after_s = 0.02
    started = time.monotonic()
    models = await client_for(emu).models.list()  # SDK default: 2 retries
    assert models.data and time.monotonic() - started < 2.0  # retry-after-ms honoured
    assert [e.status for e in emu.log.of("http")] == [429, 429, 200]

    emu.faults.http_status, emu.faults.http_status_count = 429, 1
    with pytest.raises(openai.RateLimitError) as info:
        await client_for(emu, max_retries=0).models.list()
    assert info.value.status_code == 429 and info.value.code == "rate_limit_exceeded"
    assert info.value.response.headers["retry-after-ms"] == "20"
    assert info.value.response.headers["retry-after"] == "1"


@pytest.mark.asyncio
async def test_http_429_insufficient_quota_is_not_retried(emu: OpenAIEmulator) -> None:
    emu.faults.http_status, emu.faults.http_status_count = 429, 5
    emu.insufficient_quota = True
    with pytest.raises(openai.RateLimitError) as info:
        await client_for(emu).models.list()  # default retries, but x-should-retry: false
    assert info.value.code == "insufficient_quota"
    assert len(emu.log.of("http")) == 1


@pytest.mark.asyncio
async def test_http_500_is_internal_server_error(emu: OpenAIEmulator) -> None:
    emu.faults.http_status, emu.faults.http_status_count = 500, 1
    with pytest.raises(openai.InternalServerError) as info:
        await client_for(emu, max_retries=0).models.list()
    assert info.value.status_code == 500


@pytest.mark.asyncio
async def test_unknown_model_and_wrong_key(emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client_for(emu, max_retries=0).models.retrieve("nope")
    assert info.value.code == "model_not_found"
    emu.accepted_keys = {"sk-good"}
    with pytest.raises(openai.AuthenticationError):
        await client_for(emu, max_retries=0).models.list()
    with pytest.raises(InvalidStatus) as ws_info:
        async with client_for(emu).realtime.connect(model=MODEL):
            pass
    assert ws_info.value.response.status_code == 401
    good = AsyncOpenAI(api_key="sk-good", base_url=emu.base_url + "/v1", max_retries=0)
    assert (await good.models.list()).data
    assert "sk-good" not in repr(emu.log.entries) and "sk-test" not in repr(emu.log.entries)


@pytest.mark.asyncio
async def test_http_stall_times_out(emu: OpenAIEmulator) -> None:
    emu.faults.stall_s = 0.4
    with pytest.raises(openai.APITimeoutError):
        await client_for(emu, max_retries=0, timeout=0.1).models.list()


# -- WebSocket faults ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_ws_handshake_rejected_with_401(emu: OpenAIEmulator) -> None:
    emu.faults.ws_reject_status = 401
    with pytest.raises(InvalidStatus) as info:
        async with client_for(emu).realtime.connect(model=MODEL):
            pass
    assert info.value.response.status_code == 401
    body = json.loads(info.value.response.body or b"{}")
    assert body["error"]["code"] == "invalid_api_key"
    # one-shot: the next handshake succeeds
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
    assert [e.status for e in emu.log.of("ws_open")] == [401, 101]


@pytest.mark.asyncio
async def test_ws_reject_as_error_event_then_close(emu: OpenAIEmulator) -> None:
    emu.faults.ws_reject_status = 401
    emu.ws_reject_mode = "error_close"
    seen: list[str] = []
    with pytest.raises(ConnectionClosedError) as info:
        async with client_for(emu).realtime.connect(model=MODEL) as conn:
            async for event in conn:
                seen.append(event.type)
                if event.type == "error":
                    assert event.error.code == "invalid_api_key"
    assert seen == ["error"]
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


@pytest.mark.asyncio
async def test_ws_drop_after_n_events_is_1011_and_reconnect_works(emu: OpenAIEmulator) -> None:
    emu.faults.drop_after_events = 2  # session.created, session.updated, then the drop
    with pytest.raises(ConnectionClosedError) as info:
        async with client_for(emu).realtime.connect(model=MODEL) as conn:
            await conn.session.update(session={"type": "realtime"})
            async for _event in conn:
                pass
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    # the SDK's own reconnect (on_reconnecting) gets a fresh session
    emu.faults.drop_after_events = 1
    attempts: list[int | None] = []

    def on_reconnecting(event: Any) -> None:
        attempts.append(event.close_code)

    async with client_for(emu).realtime.connect(
        model=MODEL, on_reconnecting=on_reconnecting, initial_delay=0.01
    ) as conn:
        created: list[Any] = []
        async for event in conn:  # the SDK reconnects only while iterating
            created.append(event)
            if len(created) == 2:
                break
    first, second = created
    assert first.type == second.type == "session.created"
    assert first.session.model_extra["id"] != second.session.model_extra["id"]
    assert attempts == [1011]
    assert [s.close_code for s in emu.sessions[:2]] == [1011, 1011]


@pytest.mark.asyncio
async def test_ws_drop_without_close_frame_is_1006(emu: OpenAIEmulator) -> None:
    emu.faults.drop_after_events = 1
    emu.faults.drop_close_code = 1006
    with pytest.raises(ConnectionClosedError) as info:
        async with client_for(emu).realtime.connect(model=MODEL) as conn:
            async for _event in conn:
                pass
    assert info.value.rcvd is None  # no close frame: websockets reports 1006


@pytest.mark.asyncio
async def test_ws_malformed_frame_then_connection_still_works(emu: OpenAIEmulator) -> None:
    emu.faults.malformed_after_events = 1
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        with pytest.raises(json.JSONDecodeError):
            await conn.recv()
        await conn.session.update(session={"type": "realtime", "instructions": "Still here."})
        updated = await conn.recv()
        assert updated.type == "session.updated" and updated.session.instructions == "Still here."


@pytest.mark.asyncio
async def test_ws_unknown_event_type_parses_leniently(emu: OpenAIEmulator) -> None:
    emu.faults.unknown_after_events = 1
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        unknown = await conn.recv()
        assert unknown.type == "emulator.unknown_future_event"
        # the SDK builds the first union member for unknown types (reference §3.1)
        assert type(unknown).__name__ == "ConversationCreatedEvent"
    _, problems = validate_server_event(json.dumps({"type": unknown.type, "event_id": "e"}))
    assert problems and "unknown to the SDK" in problems[0]


@pytest.mark.asyncio
async def test_ws_stall_delays_session_created(emu: OpenAIEmulator) -> None:
    emu.faults.stall_s = 0.3  # slow loris: every server frame waits this long
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.recv(), 0.1)
        assert (await asyncio.wait_for(conn.recv(), 2)).type == "session.created"
        started = time.monotonic()
        await conn.session.update(session={"type": "realtime"})
        assert (await asyncio.wait_for(conn.recv(), 2)).type == "session.updated"
        assert time.monotonic() - started >= 0.25


# -- transcription with diarization ------------------------------------------------------


@pytest.mark.asyncio
async def test_diarized_transcription_segments(emu: OpenAIEmulator) -> None:
    emu.script.turns = [
        Turn(
            user_text="unused",
            segments=[("speaker_1", "Hi Bob."), ("speaker_2", "Hi Alice, how are you doing?")],
            reply="Hello to you both.",
        )
    ]
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "turn_detection": None,
                        "transcription": {"model": "gpt-4o-transcribe-diarize"},
                    }
                },
            }
        )
        assert (await conn.recv()).type == "session.updated"
        audio = bytes(2000 * BYTES_PER_MS)  # 2 s
        for i in range(0, len(audio), 40 * BYTES_PER_MS):
            chunk = audio[i : i + 40 * BYTES_PER_MS]
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        await conn.input_audio_buffer.commit()
        events: list[Any] = []
        async for event in conn:
            events.append(event)
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
    segments = [
        e for e in events if e.type == "conversation.item.input_audio_transcription.segment"
    ]
    # the service labels speakers A, B, ... in order of appearance
    assert [(s.speaker, s.text) for s in segments] == [
        ("A", "Hi Bob."),
        ("B", "Hi Alice, how are you doing?"),
    ]
    assert emu.sessions[-1].speaker_labels == {"speaker_1": "A", "speaker_2": "B"}
    assert segments[0].start == 0.0 and segments[0].end == segments[1].start
    assert 1.9 <= segments[1].end <= 2.0
    assert all(s.item_id == events[0].item_id for s in segments)
    assert events[-1].transcript == "Hi Bob. Hi Alice, how are you doing?"


# -- the strict validator itself ---------------------------------------------------------


def test_strict_validator_rejects_what_the_sdk_would_swallow() -> None:
    ok = {"type": "input_audio_buffer.cleared", "event_id": "e1"}
    assert validate_server_event(json.dumps(ok)) == ("input_audio_buffer.cleared", [])
    missing = {"type": "response.output_audio.delta", "event_id": "e1", "response_id": "r"}
    assert len(validate_server_event(json.dumps(missing))[1]) == 4
    coerced = {"type": "input_audio_buffer.speech_started", "event_id": "e", "item_id": "i"}
    assert validate_server_event(json.dumps({**coerced, "audio_start_ms": "12"}))[1]
    extra = {**ok, "surprise": 1}
    assert "surprise" in validate_server_event(json.dumps(extra))[1][0]
    assert validate_server_event("{not json")[1]
    assert validate_client_event(json.dumps({"type": "input_audio_buffer.commit"}))[1] == []
    assert validate_client_event(json.dumps({"type": "response.audio.delta"}))[1]


# -- the threaded fixture with the sync client, and the CLI -------------------------------


def test_sync_client_against_threaded_emulator(openai_emulator_thread: OpenAIEmulator) -> None:
    emu = openai_emulator_thread
    client = OpenAI(api_key="sk-test", base_url=emu.base_url + "/v1")
    with client.realtime.connect(model=MODEL) as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        assert conn.recv().type == "session.updated"
        conn.input_audio_buffer.append(audio=base64.b64encode(bytes(200 * BYTES_PER_MS)).decode())
        conn.input_audio_buffer.commit()
        conn.response.create()
        for event in conn:
            if event.type == "response.done":
                assert event.response.status == "completed"
                break
    emu.wait_for_sync("ws_in", "response.create", timeout=1)


def test_cli_serves_models_and_realtime() -> None:
    from voicetui.testing.emulators.common import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicetui.testing.emulators.openai",
            "--port",
            str(port),
            "--pace",
            "0",
            "--reply",
            "From the command line.",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        client = OpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1")
        assert client.models.retrieve(MODEL).id == MODEL
        with client.realtime.connect(model=MODEL) as conn:
            assert conn.recv().type == "session.created"
            conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            )
            conn.response.create()
            text = ""
            for event in conn:
                if event.type == "response.output_audio_transcript.done":
                    text = event.transcript
                if event.type == "response.done":
                    break
        assert text == "From the command line."
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.asyncio
async def test_drop_in_the_middle_of_a_response(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(reply="A reply long enough to be cut off in the middle of its audio.")]
    emu.timing.audio_pace = 10.0
    seen: list[str] = []
    with pytest.raises(ConnectionClosedError) as info:
        async with client_for(emu).realtime.connect(model=MODEL) as conn:
            await conn.session.update(
                session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
            )
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            )
            await conn.response.create()
            emu.faults.drop_after_events = 12  # well inside the delta stream
            async for event in conn:
                seen.append(event.type)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    assert "response.output_audio.delta" in seen and "response.done" not in seen
    assert len(seen) == 12
    await emu.wait_for("ws_close", "", timeout=2)
    assert emu.sessions[-1].active is None


@pytest.mark.asyncio
async def test_stop_closes_open_sockets_promptly() -> None:
    emu = OpenAIEmulator()
    await emu.start()
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        started = time.monotonic()
        await emu.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(ConnectionClosed) as info:
            await conn.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


@pytest.mark.asyncio
async def test_wrong_sample_rate_is_refused(emu: OpenAIEmulator) -> None:
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.send_raw(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                    },
                }
            )
        )
        err = await conn.recv()
        assert err.type == "error" and err.error.param == "session.audio.input.format.rate"
    emu.client_violations.clear()  # 16000 is not even a valid client value in the SDK types


@pytest.mark.asyncio
async def test_unknown_url_is_an_openai_404(emu: OpenAIEmulator) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client_for(emu, max_retries=0).files.list()
    assert info.value.status_code == 404
    assert info.value.message.startswith("Error code: 404")
    assert "Invalid URL (GET /v1/files)" in str(info.value.body)


def test_every_event_type_in_the_source_is_known_to_the_sdk() -> None:
    """A static net under the per-frame checks: rarely-run paths cannot carry a typo."""
    import re
    from pathlib import Path

    import voicetui.testing.emulators.openai as module
    from voicetui.testing.emulators.strict_openai import (
        client_event_classes,
        server_event_classes,
    )

    source = Path(module.__file__).read_text()
    prefixes = "session|conversation|input_audio_buffer|response|rate_limits|output_audio_buffer"
    names = set(re.findall(rf'"((?:{prefixes})\.[a-z_.]+)"', source))
    client = set(client_event_classes())
    params = set(re.findall(r'param=f?"([^"]+)"', source))  # error params, not events
    emitted = names - client - params
    unknown = emitted - {"emulator.unknown_future_event"} - set(server_event_classes())
    assert not unknown, unknown
    assert {"response.output_text.delta", "response.output_audio_transcript.delta"} <= emitted
    assert len(emitted) >= 28  # the regex really found the catalogue


@pytest.mark.asyncio
async def test_starts_well_under_a_second() -> None:
    started = time.monotonic()
    emu = OpenAIEmulator()
    await emu.start()
    elapsed = time.monotonic() - started
    await emu.stop()
    assert elapsed < 0.5


@pytest.mark.asyncio
async def test_failed_transcription_and_failed_response(emu: OpenAIEmulator) -> None:
    emu.script.turns = [Turn(user_text="lost", reply="Never said."), Turn(reply="Said.")]
    emu.fail_transcriptions = 1
    emu.fail_responses = 1
    async with client_for(emu).realtime.connect(model=MODEL) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "turn_detection": None,
                        "transcription": {"model": "gpt-4o-transcribe"},
                    }
                },
            }
        )
        assert (await conn.recv()).type == "session.updated"
        await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(4800 * 3)).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        events: list[Any] = []
        async for event in conn:
            events.append(event)
            if event.type == "response.done":
                break
        names = [e.type for e in events]
        failed = events[names.index("conversation.item.input_audio_transcription.failed")]
        assert failed.error.code == "audio_unintelligible"
        assert "conversation.item.input_audio_transcription.completed" not in names
        done = events[-1]
        assert done.response.status == "failed"
        assert done.response.status_details.error.type == "server_error"
        assert done.response.output == []
        # both knobs are spent: the next turn works
        await conn.response.create()
        async for event in conn:
            if event.type == "response.done":
                assert event.response.status == "completed"
                break
