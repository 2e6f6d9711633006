"""Audio building blocks without a sound device: jitter buffer, resampler, level, VAD,
turn detection, WAV endpoints, the echo gate over the real-time WAV speaker, stderr guard."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from voicetui.audio.analysis import dominant_frequency, max_normalized_xcorr, tone, tone_purity_db
from voicetui.audio.duplex import EchoGate
from voicetui.audio.factory import AudioOptions, open_audio
from voicetui.audio.jitter import DRAINED, FIRST_AUDIO, JitterBuffer
from voicetui.audio.level import SILENCE_DBFS, rms_peak_dbfs
from voicetui.audio.ports import (
    ENGINE_RATE,
    AudioInput,
    AudioOutput,
    BargeInGate,
    CaptureFrame,
    DuplexPolicy,
)
from voicetui.audio.resample import StreamResampler, to_float32, to_int16
from voicetui.audio.vad import LocalTurnDetector, TurnEvent, Vad
from voicetui.audio.wav import WavInput, WavOutput, read_wav_mono, write_wav_pcm16

ROOT = Path(__file__).resolve().parent.parent
SR = ENGINE_RATE
BLOCK = 240  # 10 ms


def speech_wav(tmp_path: Path, text: str = "Hello there, this is a test.", rate: int = SR) -> Path:
    """A real spoken sentence (espeak-ng + sox)."""
    out = tmp_path / f"speech_{rate}.wav"
    subprocess.run(
        ["bash", str(ROOT / "tools" / "audio-sandbox.sh"), "speech", text, str(out), str(rate)],
        check=True,
        capture_output=True,
    )
    return out


# ---------------------------------------------------------------- jitter buffer
def test_jitter_buffer_prebuffers_then_plays_and_counts_frames() -> None:
    jb = JitterBuffer(SR, prebuffer_ms=20)
    out = np.zeros(BLOCK, np.float32)
    jb.push("a", np.full(240, 0.5, np.float32), now=0.0)  # 10 ms < 20 ms pre-buffer
    assert jb.pull(out, now=0.005) == 0 and not out.any()
    jb.push("a", np.full(240, 0.5, np.float32), now=0.006)
    # 20 ms queued, but only 10 ms *before the newest chunk*: no cushion for the next one yet
    assert jb.pull(out, now=0.010) == 0
    jb.push("a", np.full(240, 0.5, np.float32), now=0.012)  # a burst: the source runs ahead
    assert jb.pull(out, now=0.013) == BLOCK and np.allclose(out, 0.5)
    assert jb.played_frames("a") == BLOCK
    events = jb.take_events()
    assert [e[0] for e in events] == [FIRST_AUDIO]
    assert jb.pull(out, now=0.020) == BLOCK
    assert jb.pull(out, now=0.030) == BLOCK
    assert jb.pull(out, now=0.040) == 0  # end of item: drained, not an underrun
    assert [e[0] for e in jb.take_events()] == [DRAINED]
    assert jb.underruns == 0 and not jb.is_active()


def test_short_item_starts_after_prebuffer_time() -> None:
    jb = JitterBuffer(SR, prebuffer_ms=20)
    out = np.zeros(BLOCK, np.float32)
    jb.push("a", np.full(100, 0.5, np.float32), now=1.0)
    assert jb.pull(out, now=1.010) == 0
    assert jb.pull(out, now=1.021) == 100 and not out[100:].any()


def test_underrun_mid_item_grows_prebuffer_up_to_cap() -> None:
    jb = JitterBuffer(SR, prebuffer_ms=20, max_prebuffer_ms=40, step_ms=10)
    out = np.zeros(BLOCK, np.float32)
    t = 0.0
    for _ in range(4):
        jb.push("a", np.full(480, 0.1, np.float32), now=t)
        for _ in range(8):  # 80 ms: the chunk plays out, the next one is late
            jb.pull(out, now=t)
            t += 0.01
        assert not jb.is_active()
    assert jb.underruns == 3  # the 2nd, 3rd and 4th chunk found it dry
    assert jb.prebuffer_ms == pytest.approx(40.0)
    jb.push("b", np.full(480, 0.1, np.float32), now=t)  # a new item after a dry end: no underrun
    assert jb.underruns == 3


def test_flush_fades_within_one_block_and_reports_played() -> None:
    jb = JitterBuffer(SR, prebuffer_ms=0)
    out = np.zeros(BLOCK, np.float32)
    jb.push("a", np.full(SR, 0.5, np.float32), now=0.0)
    for i in range(10):
        jb.pull(out, now=i * 0.01)
    item, played = jb.flush(fade_frames=120)  # 5 ms
    assert item == "a" and played == 10 * BLOCK
    jb.pull(out, now=0.2)
    assert out[0] == pytest.approx(0.5, abs=1e-3)
    assert np.all(np.diff(out[:120]) <= 1e-6)  # a monotone ramp down ...
    assert not out[120:].any()  # ... then silence, inside the same block
    assert jb.pull(out, now=0.21) == 0 and not jb.is_active()
    # a flush during a pause inside the item (it ran dry) still reports what was played
    jb.push("b", np.full(480, 0.5, np.float32), now=1.0)
    for i in range(5):
        jb.pull(out, now=1.0 + i * 0.01)
    assert jb.flush(120) == ("b", 480)
    assert jb.flush(120) == (None, 0)  # nothing left of any item


# ---------------------------------------------------------------- resampling, levels
@pytest.mark.parametrize("rate", [16_000, 44_100, 48_000])
def test_stream_resampler_random_chunks_is_seamless(rate: int) -> None:
    rng = np.random.default_rng(1)
    x = tone(440.0, 1000)
    rs = StreamResampler(SR, rate)
    parts, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 700))  # odd sizes: partial samples must carry over
        parts.append(rs.process(x[pos : pos + n]))
        pos += n
    parts.append(rs.drain())
    y = np.concatenate(parts)
    assert abs(len(y) - rate) <= 2  # duration kept exactly
    assert dominant_frequency(y, rate) == pytest.approx(440.0, abs=2)
    assert tone_purity_db(y[rate // 20 : -rate // 20], rate, 440.0) > 35  # no clicks at joins


def test_levels_in_dbfs() -> None:
    full = to_int16(tone(1000, 100, amplitude=1.0))
    rms, peak = rms_peak_dbfs(full)
    assert rms == pytest.approx(-3.01, abs=0.1) and peak == pytest.approx(0.0, abs=0.1)
    assert rms_peak_dbfs(np.zeros(480, np.int16)) == (SILENCE_DBFS, SILENCE_DBFS)
    assert rms_peak_dbfs(to_float32(full))[0] == pytest.approx(rms, abs=0.01)


# ---------------------------------------------------------------- VAD and turns
def test_vad_and_turn_detector_on_real_speech(tmp_path: Path) -> None:
    speech = to_int16(read_wav_mono(speech_wav(tmp_path)))
    pcm = np.concatenate([np.zeros(SR // 2, np.int16), speech, np.zeros(SR, np.int16)])
    vad, det = Vad(2), LocalTurnDetector(start_ms=60, end_silence_ms=500)
    events, verdicts = [], []
    for i in range(0, len(pcm) - 480 + 1, 480):
        block = pcm[i : i + 480]
        rms, peak = rms_peak_dbfs(block)
        frame = CaptureFrame(block, 0.0, rms, peak, vad.classify_block(block, rms))
        verdicts.append(bool(frame.speech))
        ev = det.update(frame)
        if ev is not None:
            events.append((ev, i / SR))
    assert not any(verdicts[:20])  # the leading half second of silence
    assert sum(verdicts) > 0.4 * len(speech) / 480
    assert [e for e, _ in events] == [TurnEvent.SPEECH_STARTED, TurnEvent.SPEECH_STOPPED]
    start, stop = events[0][1], events[1][1]
    assert 0.5 <= start <= 0.7
    end_of_speech = 0.5 + len(speech) / SR
    assert end_of_speech - 0.3 <= stop <= end_of_speech + 0.7


# ---------------------------------------------------------------- WAV endpoints
@pytest.mark.asyncio
async def test_wav_input_realtime_and_fast(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    write_wav_pcm16(src, tone(300, 500, rate=48_000), rate=48_000)  # resampled to 24 kHz
    for realtime in (True, False):
        wav_in = WavInput(src, realtime, tail_silence_ms=100)
        await wav_in.start()
        t0 = time.monotonic()
        frames = [f async for f in wav_in.frames()]
        took = time.monotonic() - t0
        assert len(frames) == 30 and all(len(f.pcm) == 480 for f in frames)
        pcm = np.concatenate([f.pcm for f in frames])
        assert dominant_frequency(pcm[: SR // 2].astype(np.float32), SR) == pytest.approx(
            300, abs=3
        )
        assert frames[0].rms_dbfs > -12 and frames[-1].rms_dbfs == SILENCE_DBFS
        if realtime:
            assert 0.58 <= took <= 1.0
        else:
            assert took < 0.2
        assert len(wav_in.preroll()) == 7200 and len(wav_in.preroll(100)) == 2400


@pytest.mark.asyncio
async def test_wav_output_fast_and_realtime_flush(tmp_path: Path) -> None:
    fast = WavOutput(tmp_path / "fast.wav", realtime=False)
    firsts: list[str] = []
    fast.set_on_first_audio(lambda item, t: firsts.append(item))
    await fast.start()
    fast.enqueue("a", to_int16(tone(440, 200)))
    fast.enqueue("a", tone(440, 100))
    assert fast.played_ms("a") == 300 and fast.flush() == 300 and firsts == ["a"]
    await fast.stop()
    assert len(read_wav_mono(tmp_path / "fast.wav")) == int(0.3 * SR)

    rt = WavOutput(tmp_path / "rt.wav", realtime=True)
    await rt.start()
    rt.enqueue("b", tone(440, 1000))
    await asyncio.sleep(0.3)
    played = rt.flush(5.0)
    assert 200 <= played <= 400 and rt.played_ms("b") == played
    await rt.wait_idle()
    rt.enqueue("c", to_int16(tone(660, 100)))
    await rt.wait_idle()
    assert rt.played_ms("c") == 100
    await rt.stop()
    audio = read_wav_mono(tmp_path / "rt.wav")
    env = np.abs(audio[: len(audio) // 48 * 48]).reshape(-1, 48).max(axis=1)  # 2 ms windows
    first_gap_ms = int(np.argmin(env > 0.05)) * 2
    # what was written before the flush is what played_ms said, plus at most the 5 ms fade
    assert played - 2 <= first_gap_ms <= played + 6


# ---------------------------------------------------------------- echo gate
def _frame(db: float, speech: bool) -> CaptureFrame:
    amp = 10 ** (db / 20) * np.sqrt(2)
    pcm = to_int16(tone(200, 20, amplitude=amp))
    rms, peak = rms_peak_dbfs(pcm)
    return CaptureFrame(pcm, time.monotonic(), rms, peak, speech)


@pytest.mark.asyncio
async def test_echo_gate_policies_over_real_time_playback(tmp_path: Path) -> None:
    out = WavOutput(tmp_path / "o.wav", realtime=True)
    await out.start()
    gated = EchoGate(out, DuplexPolicy.GATED, margin_db=8, sustain_ms=60)
    half, full = EchoGate(out, DuplexPolicy.HALF), EchoGate(out, DuplexPolicy.FULL)
    assert all(isinstance(g, BargeInGate) for g in (gated, half, full))
    assert gated.allows_barge_in() and half.mic_open() and half.allows_barge_in()
    out.enqueue("a", tone(300, 1500, amplitude=0.3))  # playback at about -13.5 dBFS
    await asyncio.sleep(0.1)
    assert not half.mic_open() and not half.allows_barge_in() and full.allows_barge_in()
    for _ in range(30):  # echo at -25 dBFS, speech-like: learnt as coupling, never barge-in
        gated.observe_mic(_frame(-25.0, True))
        assert not gated.allows_barge_in()
        await asyncio.sleep(0.005)
    # the coupling estimate (11.5 dB below the playback) is approached slowly from above
    assert -5.0 < gated.coupling_db < -2.0
    for _ in range(2):  # 40 ms of loud speech: too short (a cough)
        gated.observe_mic(_frame(-6.0, True))
    assert not gated.allows_barge_in()
    gated.observe_mic(_frame(-25.0, True))
    for _ in range(3):  # 60 ms sustained, 19 dB over the echo: barge-in
        gated.observe_mic(_frame(-6.0, True))
    assert gated.allows_barge_in()
    out.flush()
    await asyncio.sleep(0.35)  # echo tail window passed
    assert half.mic_open() and gated.allows_barge_in()
    await out.stop()


# ---------------------------------------------------------------- factory
@pytest.mark.asyncio
async def test_open_audio_with_wav_endpoints(tmp_path: Path) -> None:
    src = speech_wav(tmp_path)
    rig = open_audio(
        AudioOptions(duplex="half"),
        input_wav=src,
        output_wav=tmp_path / "out.wav",
        realtime_input=False,
    )
    assert isinstance(rig.input, AudioInput) and isinstance(rig.output, AudioOutput)
    assert rig.gate.policy is DuplexPolicy.HALF
    errors: list[object] = []
    rig.set_on_error(errors.append)
    rig.check()
    await rig.start()
    frames = [f async for f in rig.input.frames()]
    pcm = np.concatenate([f.pcm for f in frames])
    rig.output.enqueue("echo", pcm)
    await rig.stop()
    back = read_wav_mono(tmp_path / "out.wav")
    corr, _ = max_normalized_xcorr(back, read_wav_mono(src))
    assert corr > 0.99 and not errors


# ---------------------------------------------------------------- stderr guard
def test_stderr_guard_sends_fd2_to_log_and_keeps_terminal(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from voicetui.stderr_guard import stderr_to_log\n"
        f"with stderr_to_log(Path({str(log)!r})) as term:\n"
        "    os.write(2, b'ALSA lib noise from C\\n')\n"
        "    print('python warning', file=sys.stderr)\n"
        "    sys.__stderr__.write('ui frame\\n')\n"
        "    term.write('ui frame 2\\n')\n"
        "os.write(2, b'after guard\\n')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.stderr == "ui frame\nui frame 2\nafter guard\n"
    assert log.read_text() == "ALSA lib noise from C\npython warning\n"
    assert (log.stat().st_mode & 0o777) == 0o600
