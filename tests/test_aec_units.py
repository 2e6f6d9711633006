"""The echo canceller's path without devices: a speaker reference written block by block on a
synthetic clock (48 kHz, like the sandbox's device), a microphone that hears the user and, or
not, the speaker's echo. Deterministic reproduction of issue 15's missed first barge-in under
``aec``: with no echo path, AEC3 suppresses the user speaking over the first reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from voicetui.audio.aec import EchoCancelledInput, EchoCanceller, aec_available
from voicetui.audio.duplex import EchoGate
from voicetui.audio.level import rms_peak_dbfs
from voicetui.audio.ports import ENGINE_RATE, CaptureFrame, DuplexPolicy
from voicetui.audio.reference import SpeakerReference
from voicetui.audio.resample import to_int16
from voicetui.audio.vad import Vad
from voicetui.testing.emulators.common import speech_like_pcm

pytestmark = pytest.mark.skipif(not aec_available(), reason="livekit's APM does not load")

T0 = 1000.0
DEVICE_RATE = 48_000
REPLY = speech_like_pcm(
    "Well, that is a good question and the answer takes a while, so let me walk you "
    "through it step by step from the very start."
)
USER = speech_like_pcm("Wait stop please, I have a question.", rate=18_000)  # a higher voice
REPLY_AT_S, USER_AT_S, SECONDS = 0.3, 1.3, 3.5  # the user speaks 1 s into the first reply
FRAME = ENGINE_RATE // 50


class Speaker:
    """The speaker side the gate asks about: playing from ``REPLY_AT_S`` on."""

    def __init__(self) -> None:
        self.now = 0.0

    def is_active(self) -> bool:
        return self.now >= REPLY_AT_S

    def recent_level_dbfs(self, window_s: float = 0.2) -> float:
        return -14.0 if self.is_active() else -120.0


class Mic:
    """An :class:`~voicetui.audio.ports.AudioInput` of 20 ms frames from an array; before each
    frame the speaker reference gets everything queued up to 20 ms past it."""

    def __init__(self, mic: np.ndarray, speaker: np.ndarray, ref: SpeakerReference) -> None:
        self.mic, self.speaker, self.ref = mic, speaker, ref
        self.clock = Speaker()
        self._vad = Vad(2)
        self.level_dbfs = -120.0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def set_on_error(self, callback: object) -> None:
        return None

    async def frames(self) -> AsyncIterator[CaptureFrame]:
        block, written = DEVICE_RATE // 100, 0
        for k in range(len(self.mic) // FRAME):
            t_end = (k + 1) * FRAME / ENGINE_RATE
            self.clock.now = t_end
            while written / DEVICE_RATE < t_end + 0.02:
                chunk = self.speaker[written : written + block]
                self.ref.write(chunk, DEVICE_RATE, T0 + written / DEVICE_RATE)
                written += block
            pcm = to_int16(self.mic[k * FRAME : (k + 1) * FRAME])
            rms, peak = rms_peak_dbfs(pcm)
            speech = self._vad.classify_block(pcm, rms)
            yield CaptureFrame(pcm, T0 + t_end + 0.004, rms, peak, speech)


Row = tuple[float, float, float, bool, bool, bool]


def run(
    echo_db: float | None, *, passthrough: bool, quiet_start_s: float = 0.0
) -> tuple[EchoGate, list[Row]]:
    """The rig's ``aec`` path (canceller, then gate) over one reply with the user 1 s into
    it; the reply's first ``quiet_start_s`` barely audible (-57 dBFS: a breath, a fade-in),
    the mic's floor at the sandbox's (-100 dBFS). Per frame: (end time, raw dBFS, output
    dBFS, barge-in allowed, mic open, no echo path measured)."""
    import soxr

    n = int(SECONDS * ENGINE_RATE)
    speaker24 = np.zeros(n, dtype=np.float32)
    i = int(REPLY_AT_S * ENGINE_RATE)
    q = int(quiet_start_s * ENGINE_RATE)
    lead = REPLY[:q] * 10 ** (-57 / 20) / np.sqrt(np.mean(REPLY**2))
    reply = np.concatenate((lead, REPLY)).astype(np.float32)
    speaker24[i : i + len(reply)] = reply[: n - i]
    rng = np.random.default_rng(15)
    mic = (rng.standard_normal(n) * 10 ** (-100 / 20)).astype(np.float32)
    u = int(USER_AT_S * ENGINE_RATE)
    mic[u : u + len(USER)] = 0.3 * USER[: n - u]
    if echo_db is not None:
        d = int(0.04 * ENGINE_RATE)
        mic[d:] += speaker24[: n - d] * 10 ** (echo_db / 20)
    speaker = soxr.resample(speaker24, ENGINE_RATE, DEVICE_RATE).astype(np.float32)
    ref = SpeakerReference()
    inner = Mic(mic, speaker, ref)
    gate = EchoGate(inner.clock, DuplexPolicy.AEC, reference=ref)
    cancelled = EchoCancelledInput(inner, EchoCanceller(ref, 30), on_raw=gate.observe_raw)
    if passthrough:
        cancelled.passthrough = gate.no_echo_path
    rows: list[Row] = []

    async def consume() -> None:
        async for f in cancelled.frames():
            gate.observe_mic(f)
            is_open = gate.mic_open()
            ok = is_open and gate.allows_barge_in()
            now, raw, no_echo = inner.clock.now, cancelled.raw_level_dbfs, gate.no_echo_path()
            rows.append((now, raw, f.rms_dbfs, ok, is_open, no_echo))

    asyncio.run(consume())
    return gate, rows


def _user_db(rows: list[Row], col: int) -> float:
    span = [r[col] for r in rows if USER_AT_S + 0.1 <= r[0] < USER_AT_S + 1.0]
    return float(10 * np.log10(np.mean([10 ** (v / 10) for v in span])))


def test_aec3_with_no_echo_path_suppresses_the_user_over_the_first_reply() -> None:
    """The cause, reproduced: no echo path, AEC3 output used as is. AEC3 never saw an echo to
    learn the path from, so it takes the user's voice over the reply for echo."""
    _, rows = run(None, passthrough=False)
    raw, out = _user_db(rows, 1), _user_db(rows, 2)
    assert raw - out >= 15.0, (raw, out)


def test_no_echo_path_measured_the_raw_mic_goes_through_and_the_user_barges_in() -> None:
    """The fix: the gate measures no echo path within the first reply's first few hundred ms;
    from then on the raw mic is used, and the user barges in on their first frames."""
    gate, rows = run(None, passthrough=True)
    assert gate.no_echo_path()
    raw, out = _user_db(rows, 1), _user_db(rows, 2)
    assert abs(raw - out) < 0.5, (raw, out)
    allowed = [t for t, _, _, ok, *_ in rows if ok and t >= REPLY_AT_S]
    assert allowed and USER_AT_S <= allowed[0] <= USER_AT_S + 0.060, allowed[:3]


def test_a_quiet_start_of_the_first_reply_does_not_hide_the_missing_echo_path() -> None:
    """The second cause: a window of the reply's quiet start only bounds the coupling loosely
    (the mic's floor under a faint speaker: about -48 dB, not below the -50 dB of "no echo
    path"). Held as the loudest measurement, it kept the mic closed over the first reply,
    and since windows with the user in them measure nothing, for as long as the user spoke.
    Bounds are upper bounds: the tightest recent one holds."""
    gate, rows = run(None, passthrough=True, quiet_start_s=0.3)
    opened = next(t for t, *_, is_open, _ in rows if t >= REPLY_AT_S + 0.1 and is_open)
    assert opened <= USER_AT_S and gate.no_echo_path()
    allowed = [t for t, _, _, ok, *_ in rows if ok and t >= REPLY_AT_S]
    assert allowed and USER_AT_S <= allowed[0] <= USER_AT_S + 0.060, allowed[:3]


def test_with_an_echo_path_the_cleaned_mic_is_used() -> None:
    """Room at -12 dB: the path is measured, so cancellation stays on and the echo is gone;
    not for one frame (the reply's start included, where the speaker's signal has not come
    back yet) is the room taken for echo-free, faint start or not."""
    for quiet in (0.0, 0.3):
        gate, rows = run(-12.0, passthrough=True, quiet_start_s=quiet)
        assert not any(r[5] for r in rows)
        assert gate.coupling_db == pytest.approx(-12.0, abs=2.0)
    gate, rows = run(-12.0, passthrough=True)
    echo = [(r, c) for t, r, c, *_ in rows if REPLY_AT_S + 0.5 <= t < USER_AT_S and r > -60]
    erle = np.mean([r for r, _ in echo]) - np.mean([c for _, c in echo])
    assert erle >= 20.0


def test_the_default_rig_cancels_echo_and_falls_back_to_gated_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``duplex`` defaults to ``aec``; where livekit's module does not load the rig runs
    ``gated`` and says so once. (``open_audio`` opens no device.)"""
    from voicetui.audio import aec
    from voicetui.audio.factory import open_audio
    from voicetui.config import AudioSettings

    settings = AudioSettings(input_device="pulse", output_device="pulse")
    assert settings.duplex is DuplexPolicy.AEC
    rig = open_audio(settings)
    assert rig.gate.policy is DuplexPolicy.AEC and isinstance(rig.input, EchoCancelledInput)
    assert rig.input.passthrough is not None  # the raw mic while no echo path is measured
    monkeypatch.setattr(aec, "aec_unavailable_reason", lambda: "ImportError: no livekit")
    with caplog.at_level("INFO", logger="voicetui.audio"):
        rig = open_audio(settings)
    assert rig.gate.policy is DuplexPolicy.GATED and not isinstance(rig.input, EchoCancelledInput)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "duplex aec -> gated: WebRTC echo cancellation unavailable (ImportError: no livekit)"
    ]
