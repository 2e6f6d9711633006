"""Speaker labels: the realtime socket cannot diarize, so each finished user turn's audio is
sent to batch transcription with ``diarize=True`` and segment timestamps (seed 002), running
concurrently with the reply, and the user's line is relabelled when the segments arrive.
"""

from __future__ import annotations

import io
import logging
import wave
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from voicetui.audio.ports import ENGINE_RATE, Int16Array
from voicetui.providers.mistral.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from mistralai.client import Mistral


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    start: float | None
    end: float | None
    speaker: str | None


@dataclass(frozen=True, slots=True)
class Diarization:
    text: str
    segments: tuple[Segment, ...]
    audio_seconds: float
    input_tokens: int
    output_tokens: int


def wav_bytes(pcm: Int16Array, rate: int = ENGINE_RATE) -> bytes:
    """Mono PCM16 as an in-memory WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def format_segment(segment: Segment) -> str:
    """The seed's line format: ``[0.1s -> 1.5s] speaker_1: text``."""
    start = f"{segment.start:.1f}s" if segment.start is not None else "?"
    end = f"{segment.end:.1f}s" if segment.end is not None else "?"
    return f"[{start} -> {end}] {segment.speaker or 'speaker'}: {segment.text}"


async def diarize(
    client: Mistral,
    pcm: Int16Array,
    *,
    model: str,
    log: logging.Logger,
    timeout_ms: int = 30_000,
    policy: RetryPolicy | None = None,
) -> Diarization:
    """Transcribe one turn with speaker labels and segment timestamps."""
    audio = wav_bytes(pcm)
    response = await call_with_retries(
        lambda: client.audio.transcriptions.complete_async(
            model=model,
            file={"file_name": "turn.wav", "content": audio, "content_type": "audio/wav"},
            diarize=True,
            timestamp_granularities=["segment"],
            timeout_ms=timeout_ms,
        ),
        what="labelling speakers",
        policy=policy or RetryPolicy(attempts=3),
        log=log,
    )
    segments = tuple(
        Segment(
            text=(seg.text or "").strip(),
            start=seg.start,
            end=seg.end,
            speaker=seg.speaker_id if isinstance(seg.speaker_id, str) else None,
        )
        for seg in (response.segments or [])
        if (seg.text or "").strip()
    )
    usage = response.usage
    audio_seconds = float(getattr(usage, "prompt_audio_seconds", None) or len(pcm) / ENGINE_RATE)
    return Diarization(
        text=response.text or "",
        segments=segments,
        audio_seconds=audio_seconds,
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
