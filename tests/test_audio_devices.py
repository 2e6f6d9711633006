"""The audio engine against the real virtual devices of the test session's PulseAudio.

Speaker checks record ``vspeaker.monitor`` with parecord; microphone checks play WAVs into
``vmic_feed`` with paplay. Clips are short (0.5-1.5 s) to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from voicetui.audio.analysis import (
    active_span,
    dominant_frequency,
    max_normalized_xcorr,
    tone,
    tone_purity_db,
)
from voicetui.audio.capture import DeviceInput
from voicetui.audio.devices import cli_main, find_device, list_devices
from voicetui.audio.duplex import EchoGate
from voicetui.audio.errors import AudioError, AudioErrorCode
from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.playback import DeviceOutput
from voicetui.audio.ports import ENGINE_RATE, AudioInput, AudioOutput, CaptureFrame, DuplexPolicy
from voicetui.audio.resample import to_int16
from voicetui.audio.wav import read_wav_mono

pytestmark = pytest.mark.audio

ROOT = Path(__file__).resolve().parent.parent
SANDBOX = ROOT / "tools" / "audio-sandbox.sh"
SR = ENGINE_RATE


@contextmanager
def record_speaker(path: Path, rate: int = SR) -> Iterator[Path]:
    """Record the virtual speaker while the block runs (SIGINT finalises the WAV)."""
    proc = subprocess.Popen(
        [
            "parecord",
            "--latency-msec=50",
            "--device=vspeaker.monitor",
            f"--rate={rate}",
            "--channels=1",
            "--format=s16le",
            "--file-format=wav",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.25)  # let parecord connect before anything plays
    try:
        yield path
    finally:
        time.sleep(0.15)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)


def speech_wav(tmp_path: Path, text: str, rate: int = SR, name: str = "speech.wav") -> Path:
    out = tmp_path / name
    subprocess.run(
        ["bash", str(SANDBOX), "speech", text, str(out), str(rate)], check=True, capture_output=True
    )
    return out


def play_into_mic(wav: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["paplay", "--device=vmic_feed", str(wav)])


def test_devices_listed_and_chosen_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    devices = list_devices()
    names = [d.name for d in devices]
    assert "pulse" in names and any(d.is_default_output for d in devices)
    assert find_device("PUL", "output").name == "pulse"  # case-insensitive substring
    assert find_device(None, "input").is_default_input
    with pytest.raises(AudioError) as err:
        find_device("no-such-speaker", "output")
    assert err.value.code is AudioErrorCode.DEVICE_NOT_FOUND
    assert "'pulse'" in err.value.message and "\n" not in err.value.message

    class Args:
        json = True

    assert cli_main(Args()) == 0  # type: ignore[arg-type]
    data = json.loads(capsys.readouterr().out)
    assert {"pulse", "default"} <= {d["name"] for d in data["devices"]}
    Args.json = False
    assert cli_main(Args()) == 0  # type: ignore[arg-type]
    assert "default output" in capsys.readouterr().out


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("device_rate", "freq"), [(16_000, 350.0), (None, 440.0), (44_100, 520.0), (48_000, 610.0)]
)
async def test_tone_through_playback_has_right_pitch_and_length(
    tmp_path: Path, device_rate: int | None, freq: float
) -> None:
    out = DeviceOutput("pulse", device_rate=device_rate)
    assert isinstance(out, AudioOutput)
    firsts: list[tuple[str, float]] = []
    out.set_on_first_audio(lambda item, t: firsts.append((item, t)))
    await out.start()
    assert out.rate == (device_rate or SR)
    sig = tone(freq, 600)
    with record_speaker(tmp_path / "rec.wav") as rec:
        t0 = time.monotonic()
        for i, start in enumerate(range(0, len(sig), 960)):  # 40 ms chunks, int16/float32 mixed
            chunk = sig[start : start + 960]
            out.enqueue("item-1", to_int16(chunk) if i % 2 else chunk)
        await out.wait_idle()
        wall = time.monotonic() - t0
    await out.stop()
    assert firsts and firsts[0][0] == "item-1" and firsts[0][1] - t0 < 0.05
    assert out.played_ms("item-1") == 600 and out.underruns == 0
    assert 0.55 <= wall <= 0.9
    audio = read_wav_mono(rec)
    start_s, end_s = active_span(audio, SR, threshold=0.05)
    assert (end_s - start_s) * 1000 == pytest.approx(600, abs=15)
    body = audio[int((start_s + 0.02) * SR) : int((end_s - 0.02) * SR)]
    assert dominant_frequency(body, SR) == pytest.approx(freq, abs=3)
    assert tone_purity_db(body, SR, freq) > 25  # no clicks or gaps at chunk joins
    assert float(np.sqrt(np.mean(body**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


@pytest.mark.asyncio
async def test_devices_that_refuse_mono_get_stereo(tmp_path: Path) -> None:
    """Some ALSA hw devices take two channels only: the same signal goes to both, and the
    microphone uses its first channel."""
    out = DeviceOutput("pulse", channels=2)
    mic = DeviceInput("pulse", channels=2)
    await out.start()
    await mic.start()
    assert out.channels == 2 and mic.channels == 2
    with record_speaker(tmp_path / "rec.wav") as rec:
        out.enqueue("stereo", tone(700, 300))
        await out.wait_idle()
    await out.stop()
    levels: list[float] = []

    async def collect() -> None:
        async for f in mic.frames():
            levels.append(f.rms_dbfs)

    task = asyncio.create_task(collect())
    player = play_into_mic(speech_wav(tmp_path, "Two channels."))
    await asyncio.to_thread(player.wait, 10)
    await mic.stop()
    await task
    audio = read_wav_mono(rec)
    start_s, end_s = active_span(audio, SR, threshold=0.05)
    assert (end_s - start_s) * 1000 == pytest.approx(300, abs=15)
    assert dominant_frequency(audio[int(start_s * SR) : int(end_s * SR)], SR) == pytest.approx(
        700, abs=3
    )
    assert max(levels) > -30


@pytest.mark.asyncio
async def test_barge_in_flush_leaves_at_most_one_block(tmp_path: Path) -> None:
    out = DeviceOutput("pulse")
    await out.start()
    with record_speaker(tmp_path / "rec.wav") as rec:
        out.enqueue("reply", tone(500, 1500))  # the provider sent far more than real time
        await asyncio.sleep(0.4)
        played = out.flush(fade_ms=5)
        assert not out.is_active() or out.buffered_ms == 0
        await asyncio.sleep(0.3)
    await out.stop()
    assert 300 <= played <= 500
    audio = read_wav_mono(rec)
    start_s, end_s = active_span(audio, SR, threshold=0.02)
    heard_ms = (end_s - start_s) * 1000
    # everything counted as played was heard; after the flush point at most one 10 ms block
    # (the fade is 5 ms of it) came out
    assert played - 5 <= heard_ms <= played + 10 + 2, (played, heard_ms)


@pytest.mark.asyncio
@pytest.mark.parametrize("device_rate", [None, 44_100])
async def test_spoken_wav_captured_through_the_mic(tmp_path: Path, device_rate: int | None) -> None:
    src = speech_wav(tmp_path, "Hello, this is the microphone test.")
    mic = DeviceInput("pulse", device_rate=device_rate)
    assert isinstance(mic, AudioInput)
    await mic.start()
    frames: list[CaptureFrame] = []

    async def collect() -> None:
        async for f in mic.frames():
            frames.append(f)

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.3)
    n_base = len(frames)
    assert mic.digital_silence_s >= 0.2  # the idle virtual mic gives exact zeros
    player = play_into_mic(src)
    await asyncio.to_thread(player.wait, 10)
    assert mic.digital_silence_s < 1.0  # reset by the speech (the clip is longer than 1 s)
    await asyncio.sleep(0.2)
    preroll = mic.preroll()
    await mic.stop()
    await task
    assert mic.rate == (device_rate or SR)
    base, live = frames[:n_base], frames[n_base:]
    assert n_base >= 10 and all(len(f.pcm) == 480 for f in frames)
    assert max(f.rms_dbfs for f in base) < -80  # the virtual mic is silent before
    assert max(f.rms_dbfs for f in live) > -30  # speech is clearly above silence
    assert not any(f.speech for f in base) and sum(bool(f.speech) for f in live) >= 20
    captured = np.concatenate([f.pcm for f in live]).astype(np.float32) / 32768
    corr, _ = max_normalized_xcorr(captured, read_wav_mono(src))
    assert corr > 0.9
    stamps = [f.captured_at for f in frames]
    assert stamps == sorted(stamps)
    assert len(preroll) == int(0.3 * SR)
    assert np.array_equal(preroll, np.concatenate([f.pcm for f in frames[-15:]]))
    assert mic.queue_latency_s.percentile(95) < 0.05  # callback -> loop, generous for CI load


@pytest.fixture
def room() -> Iterator[None]:
    """A PulseAudio loopback from the virtual speaker into the virtual mic: an echo path with
    about 60 ms of delay and -13 dB of coupling, like a laptop's speakers and microphone."""
    module = subprocess.run(
        [
            "pactl",
            "load-module",
            "module-loopback",
            "source=vspeaker.monitor",
            "sink=vmic_feed",
            "latency_msec=20",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    inputs = json.loads(
        subprocess.run(
            ["pactl", "-f", "json", "list", "sink-inputs"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    index = next(str(x["index"]) for x in inputs if str(x["owner_module"]) == module)
    subprocess.run(["pactl", "set-sink-input-volume", index, "60%"], check=True)  # ~ -13 dB
    yield
    subprocess.run(["pactl", "unload-module", module], check=False)


@pytest.mark.asyncio
async def test_echo_gate_with_a_real_acoustic_path(tmp_path: Path, room: None) -> None:
    """A PulseAudio loopback speaker -> mic is the room: the assistant's voice comes back
    through the mic. Echo alone never counts as barge-in; a louder user voice does."""
    assistant = speech_wav(
        tmp_path, "I am the assistant and I keep talking for a while now.", name="assistant.wav"
    )
    user = speech_wav(tmp_path, "Stop, wait a moment please.", name="user.wav")
    rig = open_audio(
        AudioOptions(input_device="pulse", output_device="pulse", duplex=DuplexPolicy.GATED)
    )
    assert isinstance(rig.gate, EchoGate)
    try:
        await rig.start()
        state = {"echo_speech": 0, "barge_at": None, "half_closed": 0}
        half = EchoGate(rig.output, DuplexPolicy.HALF)  # type: ignore[arg-type]
        t0 = time.monotonic()

        async def watch() -> None:
            async for f in rig.input.frames():
                rig.gate.observe_mic(f)
                if not half.mic_open():
                    state["half_closed"] += 1
                if f.speech and rig.output.is_active() and state["barge_at"] is None:
                    state["echo_speech"] += 1
                if (
                    rig.gate.allows_barge_in()
                    and rig.output.is_active()
                    and state["barge_at"] is None
                ):
                    state["barge_at"] = time.monotonic() - t0

        task = asyncio.create_task(watch())
        voice = read_wav_mono(assistant) * 0.3  # the assistant at about -31 dBFS
        rig.output.enqueue("a1", voice)
        await asyncio.sleep(1.2)
        assert state["barge_at"] is None  # echo only, although the VAD hears speech
        assert state["echo_speech"] >= 10 and state["half_closed"] >= 30
        player = play_into_mic(user)  # the user, louder than the echo
        t_user = time.monotonic() - t0
        await asyncio.to_thread(player.wait, 10)
        await rig.stop()
        await task
    finally:
        await rig.stop()
    assert state["barge_at"] is not None
    assert t_user <= state["barge_at"] <= t_user + 0.6


_CANCEL_STORM = """
import asyncio, gc, random, sys
from voicetui.audio.capture import DeviceInput
from voicetui.audio.playback import DeviceOutput

async def main() -> None:
    rng = random.Random(7)
    for i in range(30):
        stream = DeviceInput() if i % 2 else DeviceOutput()
        task = asyncio.create_task(stream.start())
        # cancelled while PortAudio opens the stream in its thread, or just after
        await asyncio.sleep(rng.uniform(0.0, 0.03))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            stopping = asyncio.create_task(stream.stop())
            await asyncio.sleep(0)
            stopping.cancel()  # and a stop cancelled at its first await
            try:
                await stopping
            except asyncio.CancelledError:
                pass
        del stream, task
        gc.collect()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # any stream left running calls back into freed memory here
    gc.collect()

asyncio.run(main())
print("survived")
"""


def test_a_stream_cancelled_while_opening_or_closing_is_still_closed(tmp_path: Path) -> None:
    """A mic test stopped as it starts used to leave a running PortAudio stream whose Python
    object was collected: its thread then called a freed callback (SIGSEGV / SIGILL, ~7 in 10
    runs of the Settings mic test on a loaded machine). Run in a child: a crash is its exit."""
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CANCEL_STORM],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "survived" in proc.stdout
