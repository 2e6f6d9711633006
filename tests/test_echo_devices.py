"""Interrupting the assistant, measured from outside on the virtual devices: the OpenAI
emulator, the real SDK, the engine on the PulseAudio sandbox's speaker and microphone. The
speaker is recorded through its monitor with every chunk's arrival time, so the moment the
reply really went quiet is known on the same clock as the engine's events."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.ports import ENGINE_RATE, DuplexPolicy
from voicetui.audio.wav import read_wav_mono, write_wav_pcm16
from voicetui.config import AudioSettings
from voicetui.engine.events import ErrorEvent, Event, Interrupted, State
from voicetui.engine.session import ConversationEngine
from voicetui.engine.transcript import TranscriptStore
from voicetui.providers.base import ProviderSettings
from voicetui.providers.openai.realtime import OpenAIRealtimeProvider
from voicetui.testing.emulators.common import Turn, speech_like_pcm
from voicetui.testing.emulators.openai import OpenAIEmulator

pytestmark = [pytest.mark.audio, pytest.mark.asyncio]

LONG_REPLY = (
    "Well, that is a good question and the answer takes a while, so let me walk you "
    "through it step by step from the very start."
)


SANDBOX = Path(__file__).resolve().parent.parent / "tools" / "audio-sandbox.sh"


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``condition`` every 5 ms (the engine's state has no awaitable)."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not reached")


class SpeakerTap:
    """``pacat --record`` of the virtual speaker's monitor, timestamped on arrival."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = float("inf")  # monotonic time of sample 0 (earliest arrival wins)
        self._samples = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "pacat", "--record", "--raw", "--latency-msec=10", "--device=vspeaker.monitor",
            f"--rate={ENGINE_RATE}", "--channels=1", "--format=s16le",
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(960):
            now = time.monotonic()
            self.chunks.append(chunk)
            self._samples += len(chunk) // 2
            self.offset = min(self.offset, now - self._samples / ENGINE_RATE)

    async def stop(self) -> np.ndarray:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        if self._task is not None:
            await self._task
        return np.frombuffer(b"".join(self.chunks), dtype="<i2").astype(np.float32) / 32768

    def silent_from(self, audio: np.ndarray, t: float, quiet_s: float = 0.15) -> float:
        """The first moment after ``t`` from which the speaker stays silent ``quiet_s``."""
        i = max(int((t - self.offset) * ENGINE_RATE), 0)
        loud = np.abs(audio[i:]) > 1e-3
        run = int(quiet_s * ENGINE_RATE)
        idx = np.flatnonzero(loud)
        gaps = np.diff(np.concatenate(([-1], idx, [len(loud)])))
        k = int(np.argmax(gaps > run))  # first gap long enough
        start = (idx[k - 1] + 1) if k > 0 else 0
        return self.offset + (i + start) / ENGINE_RATE


async def _barge_in_run(
    tmp_path: Path, emu: OpenAIEmulator, audio: AudioSettings | AudioOptions, turns: int
) -> tuple[list[float], list[float], list[Event], float, DuplexPolicy]:
    """``turns`` times: a ~6 s reply, the user speaks 1 s into it. Returns per turn the
    gate's delay (speech_started -> cut) and the speaker's (speech_started -> silent), the
    events, the output latency and the policy the rig ran."""
    emu.script.turns = [
        Turn(user_text=f"Question {i}.", reply=LONG_REPLY) for i in range(turns + 1)
    ]
    prompt, barge = tmp_path / "prompt.wav", tmp_path / "barge.wav"
    for wav, text in ((prompt, "Tell me something long."), (barge, "Wait, stop please.")):
        speak = await asyncio.create_subprocess_exec("bash", str(SANDBOX), "speech", text, str(wav))
        assert await speak.wait() == 0
    rig = open_audio(audio)
    settings = ProviderSettings(
        spec_key="ai-voice-conv.openai", model="gpt-realtime", voice="marin",
        turn_detection="server_vad", max_session_duration_s=600, base_url=emu.base_url,
        extras={"silenceDurationMs": 400},
    )  # fmt: skip
    engine = ConversationEngine(
        provider=OpenAIRealtimeProvider(), settings=settings, api_key="sk-test",
        audio_in=rig.input, audio_out=rig.output, gate=rig.gate,
        store=TranscriptStore(tmp_path / "t"),
    )  # fmt: skip
    events: list[Event] = []
    engine.subscribe(events.append)
    tap = SpeakerTap()
    gate_delays: list[float] = []
    stops: list[tuple[float, float]] = []  # (speech_started, cut)

    async def drive() -> None:
        try:
            await until(lambda: engine.state == State.LISTENING)
            await tap.start()
            await asyncio.sleep(0.3)
            await (
                await asyncio.create_subprocess_exec("paplay", "--device=vmic_feed", str(prompt))
            ).wait()
            for _ in range(turns):
                seen = sum(isinstance(e, Interrupted) for e in events)
                await until(lambda: engine.state == State.ASSISTANT_SPEAKING)
                await asyncio.sleep(1.0)
                if engine.state != State.ASSISTANT_SPEAKING:
                    break  # the reply ended by itself: nothing to measure
                t_play = time.monotonic()
                play = await asyncio.create_subprocess_exec(
                    "paplay", "--device=vmic_feed", str(barge)
                )
                for _ in range(400):
                    if sum(isinstance(e, Interrupted) for e in events) > seen:
                        break
                    await asyncio.sleep(0.01)
                await play.wait()
                cut = [e for e in events if isinstance(e, Interrupted)][seen:]
                if not cut:
                    continue  # not interrupted: the turn fails below
                # the server's speech_started for the barge-in, as sent (same loop, loopback)
                t_ss = min(
                    e.at
                    for e in emu.log.of("ws_out")
                    if e.event_type == "input_audio_buffer.speech_started" and e.at >= t_play
                )
                stops.append((t_ss, cut[0].at))
                gate_delays.append(cut[0].at - t_ss)
            await asyncio.sleep(0.5)
        finally:
            await engine.end()

    task = asyncio.create_task(drive())
    await engine.run()
    await task
    recorded = await tap.stop()
    speaker_delays = [tap.silent_from(recorded, t_ss - 0.05) - t_ss for t_ss, _ in stops]
    out_latency = float(getattr(rig.output, "output_latency_s", 0.0))
    g = rig.gate
    print(f"\ngate: {g.policy} measurements {g.measurements} coupling {g.coupling_db:.1f}")
    return gate_delays, speaker_delays, events, out_latency, g.policy


@pytest.mark.timeout(150)
@pytest.mark.parametrize("duplex", [None, pytest.param("gated", marks=pytest.mark.soak)])
async def test_default_policy_lets_the_user_interrupt_without_an_echo_path(
    openai_emulator: OpenAIEmulator, audio_sandbox: Path, tmp_path: Path, duplex: str | None
) -> None:
    """Issue 15 (3): headphones (no echo path), default settings (``aec``; its fallback
    ``gated`` as a soak), the user speaks 1 s into a ~6 s reply: the reply stops within one
    block of the server's speech_started, 10 of 10. The first turn is the one ``aec`` used
    to miss (see tests/test_aec_units.py)."""
    from voicetui.audio.aec import aec_available

    assert len(speech_like_pcm(LONG_REPLY)) / ENGINE_RATE > 5.5
    audio = AudioSettings(input_device="pulse", output_device="pulse")
    if duplex is not None:
        audio = AudioSettings("pulse", "pulse", duplex=DuplexPolicy(duplex))
    gate_delays, speaker_delays, events, out_latency, policy = await _barge_in_run(
        tmp_path, openai_emulator, audio, turns=10
    )
    default = DuplexPolicy.AEC if aec_available() else DuplexPolicy.GATED
    assert policy is (default if duplex is None else DuplexPolicy(duplex))
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    print(f"gate ms {[round(d * 1000) for d in gate_delays]}")
    print(f"speaker ms {[round(d * 1000) for d in speaker_delays]}, out {out_latency:.3f} s")
    trace = [f"{e.at:.3f} {type(e).__name__} {getattr(e, 'state', '')}" for e in events]
    assert len(gate_delays) == 10, "\n".join(trace)
    block_s = audio.block_ms / 1000
    # the gate's decision: at the server's speech_started, or the next mic block
    assert max(gate_delays) <= block_s + 0.005
    # on the speaker: silent one block after it, plus the output path (device buffer +
    # one 10 ms playback block)
    assert max(speaker_delays) <= block_s + out_latency + 0.010


async def _measure_room(
    seconds: float, user_wav: Path | None = None, user_at_s: float = 0.0
) -> Any:
    """Play a reply on the rig for ``seconds`` with the gate watching the mic; the user's
    clip into the mic from ``user_at_s``. Returns (gate, barge-in allowed at any frame)."""
    rig = open_audio(AudioOptions(input_device="pulse", output_device="pulse"))
    allowed: list[float] = []
    await rig.start()
    t0 = time.monotonic()

    async def watch() -> None:
        async for f in rig.input.frames():
            rig.gate.observe_mic(f)
            if rig.output.is_active() and rig.gate.allows_barge_in():
                allowed.append(time.monotonic() - t0)

    task = asyncio.create_task(watch())
    try:
        rig.output.enqueue("a", speech_like_pcm(LONG_REPLY))
        if user_wav is not None:
            await asyncio.sleep(user_at_s)
            play = await asyncio.create_subprocess_exec(
                "paplay", "--device=vmic_feed", str(user_wav)
            )
            await play.wait()
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    finally:
        await rig.stop()
        await task
    return rig.gate, allowed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("delay_ms", [40, 80])
async def test_the_sandbox_echo_path_is_measured_by_the_gate(echo_path: Any, delay_ms: int) -> None:
    """Issue 15 (6): the sandbox's room at -12 dB and ``delay_ms``: the gate measures both
    (the mic's own clock offset is part of what it calls delay: one capture block at most),
    and the echo alone, which the VAD hears as speech, never barges in."""
    echo_path(db=-12.0, delay_ms=delay_ms)
    gate, allowed = await _measure_room(2.5)
    assert gate.coupling_db == pytest.approx(-12.0, abs=1.0)
    assert gate.echo_delay_s * 1000 == pytest.approx(delay_ms, abs=10)
    assert not allowed


@pytest.mark.timeout(60)
async def test_gated_cannot_tell_a_voice_at_the_echo_level_from_the_echo(
    echo_path: Any, tmp_path: Path
) -> None:
    """Issue 15 (4b) under ``gated``, documented failing: the user speaking at the level of
    the echo (-12 dB under the reply) is not let through; a voice well above it is."""
    echo_path(db=-12.0, delay_ms=40)
    user = tmp_path / "user.wav"
    speak = await asyncio.create_subprocess_exec(
        "bash", str(SANDBOX), "speech", "Wait, stop please.", str(user)
    )
    assert await speak.wait() == 0
    reply_db = 20 * np.log10(np.sqrt(np.mean(speech_like_pcm(LONG_REPLY) ** 2)))
    voice = read_wav_mono(user)
    voice_db = 20 * np.log10(np.sqrt(np.mean(voice[np.abs(voice) > 1e-3] ** 2)))
    at_echo = tmp_path / "at_echo.wav"
    write_wav_pcm16(at_echo, voice * 10 ** ((reply_db - 12 - voice_db) / 20), ENGINE_RATE)
    _, allowed = await _measure_room(3.0, at_echo, user_at_s=1.0)
    assert not allowed  # (b) fails under gated: this is what `aec` is for
    loud = tmp_path / "loud.wav"
    write_wav_pcm16(
        loud, np.clip(voice * 10 ** ((reply_db + 2 - voice_db) / 20), -1, 1), ENGINE_RATE
    )
    _, allowed = await _measure_room(3.0, loud, user_at_s=1.0)
    assert allowed and 1.0 <= allowed[0] <= 1.6


async def _espeak(text: str, out: Path) -> np.ndarray:
    speak = await asyncio.create_subprocess_exec("bash", str(SANDBOX), "speech", text, str(out))
    assert await speak.wait() == 0
    return read_wav_mono(out)


async def _aec_room(
    reply: np.ndarray, seconds: float, user_wav: Path | None = None, user_at_s: float = 0.0
) -> tuple[Any, list[tuple[float, float, float, float]], list[float]]:
    """The ``aec`` rig playing a reply for ``seconds``: per mic frame (time, raw dBFS,
    cleaned dBFS), and the times the gate allowed barge-in while the reply played."""
    rig = open_audio(AudioOptions(input_device="pulse", output_device="pulse", duplex="aec"))
    assert rig.gate.policy is DuplexPolicy.AEC
    levels: list[tuple[float, float, float, float]] = []
    allowed: list[float] = []
    await rig.start()
    t0 = time.monotonic()

    async def watch() -> None:
        async for f in rig.input.frames():
            rig.gate.observe_mic(f)
            # what the provider would hear: nothing while the gate keeps the mic closed
            sent = f.rms_dbfs if rig.gate.mic_open() else -120.0
            levels.append((time.monotonic() - t0, rig.input.raw_level_dbfs, f.rms_dbfs, sent))
            # a barge-in decision only matters while the mic is open: with it closed the
            # provider hears nothing, so no speech can start a turn or a cut
            if rig.output.is_active() and rig.gate.mic_open() and rig.gate.allows_barge_in():
                allowed.append(time.monotonic() - t0)

    task = asyncio.create_task(watch())
    try:
        rig.output.enqueue("a", reply)
        if user_wav is not None:
            await asyncio.sleep(user_at_s)
            play = await asyncio.create_subprocess_exec(
                "paplay", "--device=vmic_feed", str(user_wav)
            )
            await play.wait()
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    finally:
        await rig.stop()
        await task
    xruns, overflows = getattr(rig.output, "xruns", None), getattr(rig.input, "overflows", None)
    print(f"\nspeaker xruns {xruns}, mic overflows {overflows}")
    return rig.gate, levels, allowed


def _energy_db(levels: list[float]) -> float:
    return float(10 * np.log10(np.mean([10 ** (lv / 10) for lv in levels])))


@pytest.mark.soak
@pytest.mark.timeout(60)
async def test_aec_removes_the_echo_of_the_sandbox_room(echo_path: Any, tmp_path: Path) -> None:
    """Issue 15 (4a): with the room at -12 dB / 40 ms, the echo in the cleaned mic is at
    least 25 dB below the raw echo (ERLE over the reply, after 1 s to converge). The reply
    is real (synthesised) speech: broadband, like a voice model's."""
    echo_path(db=-12.0, delay_ms=40)
    reply = await _espeak(LONG_REPLY, tmp_path / "reply.wav")
    gate, levels, allowed = await _aec_room(reply, 5.0)
    playing = [(raw, clean) for t, raw, clean, _ in levels if 1.0 <= t <= 4.5 and raw > -60]
    assert len(playing) > 100
    erle = _energy_db([r for r, _ in playing]) - _energy_db([c for _, c in playing])
    bins = [
        round(
            _energy_db([r for t, r, _, _ in levels if b <= t < b + 0.5 and r > -60])
            - _energy_db([c for t, r, c, _ in levels if b <= t < b + 0.5 and r > -60]),
            1,
        )
        for b in np.arange(0.0, 5.0, 0.5)
        if any(b <= t < b + 0.5 and r > -60 for t, r, _, _ in levels)
    ]
    print(f"\nERLE {erle:.1f} dB (per 0.5 s: {bins}), raw coupling {gate.coupling_db:.1f} dB")
    assert erle >= 25.0
    assert not allowed  # (c) the residual echo never barges in


@pytest.mark.soak
@pytest.mark.timeout(60)
async def test_aec_lets_a_voice_at_the_echo_level_barge_in(echo_path: Any, tmp_path: Path) -> None:
    """Issue 15 (4b) under ``aec``: the user speaking over the reply at the level of its echo
    (-12 dB under the reply) barges in within one VAD decision + one block of the voice
    reaching the cleaned mic. (Under ``gated`` the same fails: see the test above.)"""
    echo_path(db=-12.0, delay_ms=40)
    reply = await _espeak(LONG_REPLY, tmp_path / "reply.wav")
    voice = await _espeak("Wait, stop please.", tmp_path / "user.wav")
    rms = lambda x: 20 * np.log10(np.sqrt(np.mean(x[np.abs(x) > 1e-3] ** 2)))  # noqa: E731
    at_echo = tmp_path / "at_echo.wav"
    write_wav_pcm16(at_echo, voice * 10 ** ((rms(reply) - 12 - rms(voice)) / 20), ENGINE_RATE)
    gate, levels, allowed = await _aec_room(reply, 3.5, at_echo, user_at_s=1.5)
    print(f"\nERLE (5th percentile) {gate.erle_db:.1f} dB, raw coupling {gate.coupling_db:.1f}")
    print([(round(t, 3), round(r), round(c)) for t, r, c, _ in levels if 1.55 <= t <= 1.8])
    assert allowed, "the voice at the echo's level did not barge in"
    # when the voice reached the cleaned mic: within 10 dB of its own level
    before = _energy_db([c for t, _, c, _ in levels if 1.0 <= t < 1.5])
    voice_db = rms(reply) - 12
    voiced = next(t for t, _, c, _ in levels if t >= 1.5 and c > voice_db - 10)
    print(f"\nresidual {before:.1f} dBFS, voice at {voiced:.3f} s, barge-in at {allowed[0]:.3f} s")
    assert 1.5 <= allowed[0] <= voiced + 0.020 + 0.020  # one VAD decision (20 ms) + one block


@pytest.mark.soak
@pytest.mark.timeout(120)
async def test_aec_ten_replies_without_the_user_trigger_nothing(
    echo_path: Any, tmp_path: Path
) -> None:
    """Issue 15 (4c): ten replies, nobody speaking: the gate never lets the echo barge in,
    and the cleaned mic never reaches the server VAD's speech level (OpenAI's default
    threshold 0.5, -35 dBFS in the emulator) in any frame it sends - so no turn starts. While
    the canceller converges (the first reply) or after a glitch, the gate holds the mic."""
    from voicetui.testing.emulators.openai import vad_threshold_dbfs

    echo_path(db=-12.0, delay_ms=40)
    texts = [f"This is reply number {i}, and it goes on for a little while." for i in range(10)]
    replies = [await _espeak(t, tmp_path / f"r{i}.wav") for i, t in enumerate(texts)]
    silence = np.zeros(int(0.3 * ENGINE_RATE), dtype=np.float32)
    reply = np.concatenate([np.concatenate((r, silence)) for r in replies])
    gate, levels, allowed = await _aec_room(reply, len(reply) / ENGINE_RATE + 0.5)
    raw_loud = sum(raw > vad_threshold_dbfs(0.5) for _, raw, _, _ in levels)
    clean_loud = sum(clean > vad_threshold_dbfs(0.5) for _, _, clean, _ in levels)
    sent_loud = sum(sent > vad_threshold_dbfs(0.5) for *_, sent in levels)
    held = sum(sent <= -120 and raw > -60 for _, raw, _, sent in levels)
    print(f"\nframes over -35 dBFS: raw {raw_loud}, cleaned {clean_loud}; ERLE {gate.erle_db:.1f}")
    print(f"sent to the provider {sent_loud}; frames held while unproven: {held}")
    assert raw_loud > 100  # without cancellation the echo alone would start turns
    assert sent_loud == 0 and not allowed
