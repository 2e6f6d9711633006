"""Unit tests of the Mistral provider's pure parts: chunker, PCM decoding, error
classification and backoff, the agent definition."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import time
from typing import Any

import numpy as np
import pytest

from voicetui.providers.base import ProviderError, ProviderSettings
from voicetui.providers.mistral.agent import agent_spec, fingerprint
from voicetui.providers.mistral.chunker import TextChunker
from voicetui.providers.mistral.diarize import Segment, format_segment
from voicetui.providers.mistral.retry import (
    RetryPolicy,
    call_with_retries,
    classify,
    retry_after_s,
)
from voicetui.providers.mistral.speech import PcmDecoder


def stream(text: str, chunker: TextChunker | None = None) -> list[str]:
    """Feed ``text`` word by word (as the agent streams it) and collect the pieces."""
    chunker = chunker or TextChunker()
    words = text.split(" ")
    pieces: list[str] = []
    for i, word in enumerate(words):
        pieces += chunker.feed(word if i == 0 else " " + word)
    rest = chunker.flush()
    return pieces + ([rest] if rest else [])


def test_chunker_cuts_first_clause_then_sentences() -> None:
    text = "I'm doing well, thank you for asking! How can I help you today?"
    assert stream(text) == ["I'm doing well,", "thank you for asking!", "How can I help you today?"]


def test_chunker_cuts_the_first_clause_with_the_token_that_completes_it() -> None:
    chunker = TextChunker()
    assert chunker.feed("Sure thing") == []
    assert chunker.feed(",") == ["Sure thing,"]  # no need to wait for the next token


def test_chunker_first_piece_word_limit_and_long_sentences() -> None:
    words = " ".join(f"w{i}" for i in range(1, 60))
    pieces = stream(words + ".")
    assert pieces[0].split() == [f"w{i}" for i in range(1, 11)]
    assert all(len(p.split()) <= 40 for p in pieces)
    assert " ".join(pieces) == words + "."


@pytest.mark.parametrize(
    "text",
    [
        "It costs 3.5 dollars. Fine.",
        "We sold 1,000 units, then more.",
        "Dr. Smith and Mr. Jones met e.g. in the U.S. today. Bye.",
    ],
)
def test_chunker_never_cuts_inside_numbers_or_abbreviations(text: str) -> None:
    pieces = stream(text)
    assert " ".join(pieces) == text
    for piece in pieces:
        assert not piece.endswith(("3.", "1,", "Dr.", "Mr.", "e.g.", "U.S."))


def test_pcm_decoder_carries_partial_samples() -> None:
    samples = np.linspace(-0.5, 0.5, 101, dtype=np.float32)
    raw = samples.astype("<f4").tobytes()
    decoder = PcmDecoder()
    cuts = [0, 3, 10, 11, 250, len(raw)]  # deltas that split samples
    out = [decoder.decode(base64.b64encode(raw[a:b]).decode()) for a, b in itertools.pairwise(cuts)]
    assert np.array_equal(np.concatenate(out), samples)


def _sdk_error(
    status: int, headers: dict[str, str] | None = None, body: str = '{"detail":"x"}'
) -> Exception:
    import httpx2
    from mistralai.client.errors import SDKError

    return SDKError("API error occurred", httpx2.Response(status, headers=headers, text=body))


def test_classify_statuses_and_transport_errors() -> None:
    import httpx2

    assert classify(_sdk_error(401)).code == "key_rejected"
    assert not classify(_sdk_error(401)).retryable
    assert classify(_sdk_error(429)).retryable and classify(_sdk_error(429)).code == "rate_limited"
    assert classify(_sdk_error(503)).code == "server"
    assert classify(_sdk_error(404)).code == "not_found"
    assert classify(httpx2.ConnectError("refused")).code == "network"
    realtime = type("RealtimeTranscriptionException", (Exception,), {})
    err = classify(realtime("Failed to connect: server rejected WebSocket connection: HTTP 401"))
    assert err.code == "key_rejected"
    assert "\n" not in str(classify(_sdk_error(422)))
    gone = _sdk_error(422, body='{"detail":"Agent ag_123 not found"}')
    assert classify(gone).code == "not_found"  # a vanished agent, however it is reported


def test_retry_after_headers() -> None:
    assert retry_after_s(_sdk_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(_sdk_error(429, {"retry-after": "2"})) == 2.0
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    wait = retry_after_s(_sdk_error(429, {"retry-after": date}))
    assert wait is not None and 3.0 < wait <= 5.0
    assert retry_after_s(_sdk_error(429)) is None


@pytest.mark.asyncio
async def test_call_with_retries_backs_off_then_gives_up() -> None:
    calls: list[float] = []

    async def always_503() -> Any:
        calls.append(time.monotonic())
        raise _sdk_error(503)

    policy = RetryPolicy(attempts=3, base_s=0.05, cap_s=0.2)
    with pytest.raises(ProviderError) as info:
        await call_with_retries(always_503, what="testing", policy=policy)
    assert len(calls) == 3 and "gave up after 3 attempts" in str(info.value)
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1

    async def key_rejected() -> Any:
        calls.append(time.monotonic())
        raise _sdk_error(401)

    calls.clear()
    with pytest.raises(ProviderError) as info:
        await call_with_retries(key_rejected, what="testing", policy=policy)
    assert len(calls) == 1 and info.value.code == "key_rejected"

    async def too_long() -> Any:
        raise _sdk_error(429, {"retry-after": "600"})

    with pytest.raises(ProviderError, match="asks to wait 600 s"):
        await asyncio.wait_for(call_with_retries(too_long, what="testing", policy=policy), 2)


def _settings(**extras: Any) -> ProviderSettings:
    return ProviderSettings(
        spec_key="ai-voice-conv.mistral",
        model="mistral-small-latest",
        voice="default",
        turn_detection="push_to_talk",
        max_session_duration_s=600,
        base_url="https://api.mistral.ai",
        extras=extras,
    )


def test_agent_spec_follows_the_seed_and_the_config() -> None:
    spec = agent_spec(_settings())
    assert spec["model"] == "mistral-small-latest"
    assert spec["tools"] == [{"type": "web_search"}]
    assert spec["completion_args"] == {"temperature": 0.3, "top_p": 0.95}
    assert "guardrails" not in spec
    moderated = agent_spec(_settings(moderation=True, moderationThresholds={"sexual": 0.2}))
    v2 = moderated["guardrails"][0]["moderation_llm_v2"]
    assert v2["custom_category_thresholds"] == {"sexual": 0.2} and v2["action"] == "block"
    assert fingerprint(_settings()) != fingerprint(_settings(webSearch=False))
    assert fingerprint(_settings()) == fingerprint(_settings())


def test_segment_line_has_the_seed_form() -> None:
    line = format_segment(Segment("Hello, how are you doing today?", 0.1, 1.5, "speaker_1"))
    assert line == "[0.1s -> 1.5s] speaker_1: Hello, how are you doing today?"


@pytest.mark.asyncio
async def test_speech_pipeline_with_a_done_per_flush_and_no_close() -> None:
    """A speech socket that confirms each piece with its own ``done`` and never closes after
    ``end`` (the SDK leaves both open): every piece is spoken in order and ``finish`` returns."""
    from aiohttp import WSMsgType, web
    from mistralai.client import Mistral

    from voicetui.providers.mistral.speech import SpeechOptions, SpeechPipeline
    from voicetui.testing.emulators.common import free_port, speech_like_pcm

    received: list[str] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = {"request_id": "r", "model": "m", "is_ref_audio": False,
                   "streaming_mode": "responsive", "response_format": "pcm",
                   "expressiveness": 1.0}  # fmt: skip
        await ws.send_json({"type": "session.created", "session": session})
        buffer = ""
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = msg.json()
            kind = data["type"]
            received.append(kind)
            if kind == "session.update":
                await ws.send_json({"type": "session.updated", "session": session})
            elif kind == "input_text.append":
                buffer += data["text"]
            elif kind == "input_text.flush":
                pcm = speech_like_pcm(buffer).astype("<f4").tobytes()
                buffer = ""
                for i in range(0, len(pcm), 4001):  # deltas that split samples
                    chunk = base64.b64encode(pcm[i : i + 4001]).decode()
                    await ws.send_json({"type": "speech.audio.delta", "audio_data": chunk})
                await ws.send_json({"type": "speech.audio.done", "usage": {}})
        return ws

    app = web.Application()
    app.router.add_get("/v1/audio/speech/realtime", socket)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    audio: list[np.ndarray] = []
    try:
        async with Mistral(api_key="k", server_url=f"http://127.0.0.1:{port}") as client:
            pipeline = SpeechPipeline(
                client,
                SpeechOptions(model="m", voice=None, timeout_ms=5000),
                on_audio=audio.append,
                log=__import__("logging").getLogger("test"),
            )
            for piece in ("First piece,", "then a sentence.", "And the end."):
                pipeline.say(piece)
            started = time.monotonic()
            await asyncio.wait_for(pipeline.finish(), 5)
            assert time.monotonic() - started < 3.0
    finally:
        await runner.cleanup()
    expected = np.concatenate(
        [speech_like_pcm(p + " ") for p in ("First piece,", "then a sentence.", "And the end.")]
    )
    assert np.array_equal(np.concatenate(audio), expected)
    assert received.count("input_text.flush") == 3 and received[-1] == "input_text.end"
    assert pipeline.stats.transport == "realtime"
