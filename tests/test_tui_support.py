"""Shared helpers for the TUI tests (no tests here): configs pointing at the emulators, the virtual
speaker, and polling the live app."""

from __future__ import annotations

import asyncio
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

OPENAI = "ai-voice-conv.openai"
MISTRAL = "ai-voice-conv.mistral"


def write_config(
    path: Path,
    *,
    provider: str,
    providers: dict[str, dict[str, Any]],
    theme: str | None = "voicetui-dusk",
    audio: dict[str, Any] | None = None,
) -> Path:
    """A config TOML using the virtual devices by name (``pulse``)."""
    doc: dict[str, Any] = {
        "provider": provider,
        "audio": audio
        if audio is not None
        else {"input_device": "pulse", "output_device": "pulse"},
        "providers": providers,
    }
    if theme:
        doc["theme"] = theme
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


async def wait_until(
    predicate: Callable[[], bool], limit: float = 10.0, what: str = "condition"
) -> float:
    """Poll ``predicate`` (on the test's loop, so the app keeps running); seconds waited."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def speech_wav(path: Path, text: str, *, lead_silence_s: float = 0.1) -> Path:
    """A speech-like clip (deterministic) as a 24 kHz 16-bit WAV for ``paplay``."""
    from voicetui.testing.emulators.common import speech_like_pcm

    pcm = speech_like_pcm(text)
    silence = np.zeros(int(24_000 * lead_silence_s), dtype=np.float32)
    data = (np.concatenate([silence, pcm, silence]) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24_000)
        wav.writeframes(data.tobytes())
    return path


async def play_into_mic(wav: Path) -> None:
    """Feed a WAV into the virtual microphone (returns when it has played)."""
    proc = await asyncio.create_subprocess_exec(
        "paplay", "--device=vmic_feed", str(wav), stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


class SpeakerRecorder:
    """Record the virtual speaker's monitor with ``parecord`` while a test runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None
        self._file: Any = None

    def __enter__(self) -> SpeakerRecorder:
        # raw PCM (a WAV header would only be finalised on a clean stop)
        self._file = self.path.open("wb")
        self.proc = subprocess.Popen(
            [
                "parec",
                "--device=vspeaker.monitor",
                "--rate=24000",
                "--channels=1",
                "--format=s16le",
                "--latency-msec=50",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self._file.close()

    def samples(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Everything recorded, as floats in [-1, 1]."""
        raw = self.path.read_bytes()
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16).astype(np.float64) / 32768

    def rms_dbfs(self) -> float:
        """Level of everything recorded (very low = nothing was played)."""
        data = self.samples()
        if data.size == 0:
            return -120.0
        return float(20 * np.log10(max(np.sqrt(np.mean(data**2)), 1e-6)))

    def voiced_seconds(self, threshold_dbfs: float = -45.0) -> float:
        """Seconds of the recording louder than ``threshold_dbfs`` (20 ms windows)."""
        data = self.samples()
        win = 480
        n = data.size // win
        if n == 0:
            return 0.0
        blocks = data[: n * win].reshape(n, win)
        rms = np.sqrt(np.mean(blocks**2, axis=1))
        loud = rms > 10 ** (threshold_dbfs / 20)
        return float(loud.sum() * win / 24_000)


async def key_latency(app: Any, key: str, handled: Callable[[], bool], limit: float = 2.0) -> float:
    """Seconds from a key arriving at the driver (as a terminal's would) to ``handled()``."""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    start = time.perf_counter()
    app._driver.send_message(event)
    while not handled():
        if time.perf_counter() - start > limit:
            raise AssertionError(f"key {key!r} not handled within {limit} s")
        await asyncio.sleep(0.001)
    return time.perf_counter() - start


async def send_keys(app: Any, *keys: str) -> None:
    """Keys as a terminal delivers them, without Pilot's wait-for-idle after each one (with
    live audio the process is never idle, and every press would wait its full second)."""
    from textual import events

    for key in keys:
        char = key if len(key) == 1 else None
        name = {" ": "space", ":": "colon"}.get(key, key)
        event = events.Key(name, char)
        event.set_sender(app)
        app._driver.send_message(event)
        await asyncio.sleep(0.01)
